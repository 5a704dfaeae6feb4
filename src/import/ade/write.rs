//! The import's pull requests, through the Orchestrator's branch and pull-request path.
//!
//! Governance is read from the base (rule zero): a manifest of a type or definition the
//! default branch does not have yet fails its checks. So an import that needs new types or
//! definitions opens a **governance** pull request first (the types added to
//! `platform.yaml`, the definitions to `catalog/`; it needs the governance approvers); once
//! it is merged, running the import again opens the **environments** pull request, whose
//! manifests pass the same checks as any other, checked before anything is pushed.
//! An import with an open pull request of the same stage opens nothing and names it.

use super::map::{DefinitionFolder, Mapping};
use super::read::AdeProject;
use crate::checks::{Change, ChangeKind};
use crate::ids::{CommitSha, RepoName};
use crate::manifest::platform::PLATFORM_PATH;
use crate::orchestrator::{Orchestrator, Problem};
use crate::repo::{CommitChange, RepoError};
use crate::store::{ImportedEnv, KnownRepository, NewImport};
use crate::tree::TreeReader as _;
use std::collections::{BTreeMap, BTreeSet};

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It opened the governance pull request: merge it, then import again.
    Governance { url: String },
    /// It opened the environments pull request.
    Environments { url: String, adopted: usize },
    /// A pull request of this import is open already; nothing was pushed.
    AlreadyOpen { url: String },
    /// Everything the project has is Paved's already (or left out); nothing was pushed.
    Nothing,
}

/// Why nothing was pushed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Refused(String),
    #[error("the import would fail the pull request's checks; nothing was pushed:\n{}", list(.0))]
    Checks(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let at = match (&p.field, p.line) {
                (Some(f), Some(l)) => format!("{}:{l} {f}", p.file),
                (Some(f), None) => format!("{} {f}", p.file),
                (None, Some(l)) => format!("{}:{l}", p.file),
                (None, None) => p.file.clone(),
            };
            format!("  {at}: {} ({})", p.message, p.check)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The default branch as the import finds it.
struct Current {
    tip: CommitSha,
    platform: String,
    types: BTreeSet<String>,
    definitions: BTreeSet<String>,
    manifests: BTreeSet<String>,
}

/// Opens the import's next pull request (see the module documentation).
pub async fn open(
    orch: &Orchestrator,
    repo: &RepoName,
    source: &str,
    project: &AdeProject,
    mapping: &Mapping,
) -> Result<Outcome, anyhow::Error> {
    let known = orch.store.repository(repo).await?.ok_or_else(|| {
        WriteError::Refused(format!(
            "Paved serves no repository {repo} yet: install the GitHub App on it (or send it a webhook) first"
        ))
    })?;
    let current = current(orch, &known).await?;
    let governance = governance_files(&current, project, mapping)?;
    if !governance.is_empty() {
        let stage = format!("{source}#governance");
        return open_stage(
            orch,
            &known,
            &current.tip,
            &stage,
            governance,
            Vec::new(),
            &governance_body(project, mapping),
        )
        .await;
    }
    let mut files = BTreeMap::new();
    let mut changes = Vec::new();
    let mut envs = Vec::new();
    for a in &mapping.adopted {
        let live = orch.store.environment(repo, &a.name).await?;
        if current.manifests.contains(&a.path) || live.is_some_and(|e| e.state.is_live()) {
            continue;
        }
        files.insert(a.path.clone(), Some(a.manifest.clone().into_bytes()));
        changes.push(Change {
            path: a.path.clone(),
            kind: ChangeKind::Added,
        });
        envs.push(ImportedEnv {
            env_name: a.name.clone(),
            manifest_path: a.path.clone(),
            source_uri: a.source.clone(),
            outputs: serde_json::to_value(&a.outputs)?,
        });
    }
    if files.is_empty() {
        return Ok(Outcome::Nothing);
    }
    let problems = orch
        .preflight_files(
            &known,
            &current.tip,
            files.clone(),
            changes,
            crate::repo::COMMITTER.0,
        )
        .await
        .map_err(|e| WriteError::Refused(e.to_string()))?;
    if !problems.is_empty() {
        return Err(WriteError::Checks(problems).into());
    }
    let adopted = envs.len();
    let body = super::report(project, mapping);
    match open_stage(orch, &known, &current.tip, source, files, envs, &body).await? {
        Outcome::Governance { url } => Ok(Outcome::Environments { url, adopted }),
        other => Ok(other),
    }
}

async fn current(orch: &Orchestrator, known: &KnownRepository) -> anyhow::Result<Current> {
    Ok(orch
        .repos
        .with_branch(
            &known.repo,
            &known.clone_url,
            known.installation,
            &known.default_branch,
            move |mirror, tip| -> Result<Current, RepoError> {
                let tree = mirror.tree_at(tip)?;
                let platform = tree
                    .read(PLATFORM_PATH)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let types = crate::manifest::platform::parse_platform(PLATFORM_PATH, &platform)
                    .map(|(_, p)| p.environment_types.keys().cloned().collect())
                    .unwrap_or_default();
                let definitions = tree
                    .list("catalog")
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let mut manifests = BTreeSet::new();
                for team in tree.list("environments").unwrap_or_default() {
                    for f in tree
                        .list(&format!("environments/{team}"))
                        .unwrap_or_default()
                    {
                        manifests.insert(format!("environments/{team}/{f}"));
                    }
                }
                Ok(Current {
                    tip: tip.clone(),
                    platform,
                    types,
                    definitions,
                    manifests,
                })
            },
        )
        .await?)
}

/// The types and definitions the adopted environments need that the default branch lacks.
fn governance_files(
    current: &Current,
    project: &AdeProject,
    mapping: &Mapping,
) -> Result<BTreeMap<String, Option<Vec<u8>>>, WriteError> {
    let mut files = BTreeMap::new();
    for DefinitionFolder { name, files: f, .. } in &mapping.definitions {
        if !current.definitions.contains(name) {
            for (path, bytes) in f {
                files.insert(path.clone(), Some(bytes.clone()));
            }
        }
    }
    let mut new_types = Vec::new();
    for t in &mapping.types {
        if current.types.contains(t) {
            continue;
        }
        let defs: BTreeSet<&str> = mapping
            .adopted
            .iter()
            .filter(|a| &a.env_type == t)
            .map(|a| a.definition.as_str())
            .collect();
        let ade = project
            .environment_types
            .iter()
            .find(|n| n.to_ascii_lowercase() == *t)
            .cloned()
            .unwrap_or_else(|| t.clone());
        new_types.push(format!(
            "{t}:\n  description: Imported from ADE project {} (environment type {ade}).\n  workflow: default\n  definitions: [{}]\n",
            project.name,
            defs.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if !new_types.is_empty() {
        let text = add_types(&current.platform, &new_types);
        crate::manifest::platform::parse_platform(PLATFORM_PATH, &text).map_err(|d| {
            WriteError::Refused(format!(
                "{PLATFORM_PATH} with the imported types would not parse: {}",
                d.first().map(|d| d.message.clone()).unwrap_or_default()
            ))
        })?;
        files.insert(PLATFORM_PATH.to_string(), Some(text.into_bytes()));
    }
    Ok(files)
}

/// `platform.yaml` with `blocks` (each a type at indentation 0) added under
/// `environmentTypes:`, indented as its other entries are; comments and order kept.
fn add_types(platform: &str, blocks: &[String]) -> String {
    let lines: Vec<&str> = platform.lines().collect();
    let key = lines.iter().position(|l| {
        let l = l.split('#').next().unwrap_or_default().trim_end();
        l == "environmentTypes:"
    });
    let Some(at) = key else {
        let mut out = platform.trim_end().to_string();
        out.push_str("\n\nenvironmentTypes:\n");
        for b in blocks {
            out.push_str(&indent(b, "  "));
        }
        return out;
    };
    let child = lines[at + 1..]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .filter(|i| !i.is_empty())
        .unwrap_or("  ");
    let mut out: Vec<String> = lines[..=at].iter().map(|l| l.to_string()).collect();
    for b in blocks {
        out.push(indent(b, child).trim_end().to_string());
    }
    out.extend(lines[at + 1..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

fn indent(block: &str, by: &str) -> String {
    block
        .lines()
        .map(|l| {
            // A nested line is indented by one more step of the same width.
            let nested = l.len() - l.trim_start().len();
            format!("{by}{}{}\n", by.repeat(nested / 2), l.trim_start())
        })
        .collect()
}

fn governance_body(project: &AdeProject, mapping: &Mapping) -> String {
    format!(
        "First step of importing ADE project `{}`: the environment types and definitions its environments need, so that their manifests pass the checks (governance is read from the default branch). Merge this (it needs the governance approvers), then run `paved import ade` again: it opens the pull request adopting the environments.\n\n{}",
        project.name,
        super::report(project, mapping)
    )
}

/// Whether an import's pull request is still open on GitHub (one that never got a pull
/// request counts as open: its branch may still be on its way).
async fn still_open(
    orch: &Orchestrator,
    known: &KnownRepository,
    import: &crate::store::ImportRecord,
) -> anyhow::Result<bool> {
    let Some(number) = import.pr_number else {
        return Ok(true);
    };
    let gh = orch.forge.client(known.installation)?;
    let pull = gh
        .get_pull(&known.repo, crate::ids::PrNumber(number))
        .await?;
    Ok(pull["state"] != "closed")
}

/// Records the stage, pushes its branch and opens its pull request.
async fn open_stage(
    orch: &Orchestrator,
    known: &KnownRepository,
    tip: &CommitSha,
    source: &str,
    files: BTreeMap<String, Option<Vec<u8>>>,
    environments: Vec<ImportedEnv>,
    body: &str,
) -> anyhow::Result<Outcome> {
    let governance = source.ends_with("#governance");
    let branch = crate::repo::unguessable_branch(
        "imports",
        if governance { "ade-governance" } else { "ade" },
    );
    let new = NewImport {
        repo: known.repo.clone(),
        source: source.to_string(),
        branch: branch.clone(),
        environments,
    };
    let id = match orch.store.open_import(new.clone()).await? {
        Ok(id) => id,
        Err(open) if still_open(orch, known, &open).await? => {
            return Ok(Outcome::AlreadyOpen {
                url: open.pr_url.unwrap_or(open.branch),
            })
        }
        // Its pull request was closed without a merge: that import is over.
        Err(open) => {
            orch.store.close_import(open.id).await?;
            match orch.store.open_import(new).await? {
                Ok(id) => id,
                Err(again) => {
                    return Ok(Outcome::AlreadyOpen {
                        url: again.pr_url.unwrap_or(again.branch),
                    })
                }
            }
        }
    };
    let title = if governance {
        "Import from ADE: environment types and definitions"
    } else {
        "Import from ADE: adopt environments"
    };
    let files: Vec<(String, Option<Vec<u8>>)> = files.into_iter().collect();
    let message = format!("{title}\n\nOpened by `paved import ade` ({source}).\n");
    let pushed = {
        let (branch, tip) = (branch.clone(), tip.clone());
        orch.repos
            .with_remote(
                &known.repo,
                &known.clone_url,
                known.installation,
                move |s| {
                    s.mirror.commits_and_push_branch(
                        &s.url,
                        s.token.as_ref(),
                        &tip,
                        &branch,
                        &[CommitChange {
                            message: &message,
                            files: &files,
                        }],
                    )
                },
            )
            .await
    };
    let head = match pushed {
        Ok(head) => head,
        Err(e) => {
            orch.store.close_import(id).await?;
            anyhow::bail!("the import's branch could not be pushed: {e}");
        }
    };
    let opened = match orch.forge.client(known.installation) {
        Ok(gh) => {
            gh.create_pull(&known.repo, &branch, &known.default_branch, title, body)
                .await
        }
        Err(e) => Err(e),
    };
    match opened {
        Ok(pull) => {
            orch.store
                .set_import_pr(id, head.as_str(), pull.number, &pull.html_url)
                .await?;
            Ok(Outcome::Governance { url: pull.html_url })
        }
        Err(e) => {
            orch.store.close_import(id).await?;
            anyhow::bail!(
                "the branch {branch} was pushed but the pull request could not be opened: {e}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_added_under_environment_types_with_its_indentation_and_comments_kept() {
        let platform = "teams:\n  a:\n    members: [x]\n\n# the types\nenvironmentTypes:   # here\n    dev:\n        workflow: default\n";
        let out = add_types(
            platform,
            &["devtest:\n  description: Imported.\n  workflow: default\n".into()],
        );
        assert_eq!(
            out,
            "teams:\n  a:\n    members: [x]\n\n# the types\nenvironmentTypes:   # here\n    devtest:\n        description: Imported.\n        workflow: default\n    dev:\n        workflow: default\n"
        );
        let none = add_types("teams: {}\n", &["t1:\n  workflow: default\n".into()]);
        assert_eq!(
            none,
            "teams: {}\n\nenvironmentTypes:\n  t1:\n    workflow: default\n"
        );
    }
}
