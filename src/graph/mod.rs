//! The Graph (SPEC 9): everything Paved knows about a repository as entities with typed
//! relations, built from the default branch's governance (teams, members, environment
//! types, the catalog), the inventory and the environments' last operations. Pure: the
//! caller reads those and decides what the caller of the API may see
//! ([`Graph::retain`]).
//!
//! Ids are `kind:owner/repo/name` (`repository:owner/repo` for the repository itself).

use crate::checks::Governance;
use crate::ids::RepoName;
use crate::store::{public_outputs, EnvironmentRecord, OperationRecord};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The kinds of entity, as the API names them (what [`EntityKind::as_str`] says of each of
/// [`EntityKind::ALL`], as a list the parameter rules can hold).
pub const KINDS: &[&str] = &[
    "repository",
    "team",
    "user",
    "environmentType",
    "template",
    "environment",
    "operation",
];

/// What an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EntityKind {
    Repository,
    Team,
    User,
    EnvironmentType,
    Template,
    Environment,
    Operation,
}

impl EntityKind {
    pub const ALL: [EntityKind; 7] = [
        EntityKind::Repository,
        EntityKind::Team,
        EntityKind::User,
        EntityKind::EnvironmentType,
        EntityKind::Template,
        EntityKind::Environment,
        EntityKind::Operation,
    ];

    /// The kind as the API names it (the first part of an id).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Repository => "repository",
            EntityKind::Team => "team",
            EntityKind::User => "user",
            EntityKind::EnvironmentType => "environmentType",
            EntityKind::Template => "template",
            EntityKind::Environment => "environment",
            EntityKind::Operation => "operation",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a relation says of its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum RelationKind {
    /// Declared in a repository (or an operation in its environment).
    DefinedIn,
    /// A user in a team.
    MemberOf,
    /// An environment or operation owned by a team.
    OwnedBy,
    /// An environment made from a template.
    InstanceOf,
    /// An environment of an environment type.
    OfType,
    RequestedBy,
    ApprovedBy,
    DeployedBy,
}

impl RelationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::DefinedIn => "definedIn",
            RelationKind::MemberOf => "memberOf",
            RelationKind::OwnedBy => "ownedBy",
            RelationKind::InstanceOf => "instanceOf",
            RelationKind::OfType => "ofType",
            RelationKind::RequestedBy => "requestedBy",
            RelationKind::ApprovedBy => "approvedBy",
            RelationKind::DeployedBy => "deployedBy",
        }
    }
}

impl std::fmt::Display for RelationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Relations sort by their names, as they always have in answers.
impl Ord for RelationKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for RelationKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One thing Paved knows.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Entity {
    pub id: String,
    pub kind: EntityKind,
    pub name: String,
    pub repository: String,
    /// What provisions it: a template's runner (`script`, `terraform`), an environment's
    /// template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The owning team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The owning user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An environment's or an operation's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// An environment's last drift check: `in_sync`, `drifted` or `unknown` (SPEC 11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// The deploy identity an environment type's runs get (SPEC 13), by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `pullRequest`, `mergeCommit`, `deployment`, `url`, `audit`, …
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    pub relations: Vec<Relation>,
    /// An environment's `url` output that is no web address (`javascript:…`, say): never a
    /// link, and never in an answer; the portal shows it as text.
    #[serde(skip)]
    #[schema(ignore)]
    pub url_text: Option<String>,
}

/// A typed edge from the entity that holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
pub struct Relation {
    #[serde(rename = "type")]
    pub kind: RelationKind,
    pub target: String,
}

/// Every entity of one or more repositories, by id.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub entities: BTreeMap<String, Entity>,
}

/// Where links point.
pub struct Links<'a> {
    /// Paved's public URL (audit links).
    pub public_url: &'a str,
    /// The repository's web address (`https://github.com/owner/repo`).
    pub web: &'a str,
}

pub fn id(kind: EntityKind, repo: &RepoName, name: &str) -> String {
    format!("{kind}:{repo}/{name}")
}

pub fn repository_id(repo: &RepoName) -> String {
    format!("repository:{repo}")
}

impl Graph {
    /// Adds `repo`'s entities: governance (when readable), then `envs` with their last
    /// operations `ops` (matched by id).
    pub fn add_repository(
        &mut self,
        repo: &RepoName,
        governance: Option<&Governance>,
        github_members: &BTreeMap<String, Vec<String>>,
        envs: &[EnvironmentRecord],
        ops: &[OperationRecord],
        links: &Links<'_>,
    ) {
        let repo_id = repository_id(repo);
        let mut r = entity(&repo_id, EntityKind::Repository, &repo.to_string(), repo);
        r.links.insert("repository".into(), links.web.to_string());
        self.put(r);
        if let Some(platform) = governance.and_then(Governance::platform) {
            for (name, team) in &platform.teams {
                let tid = id(EntityKind::Team, repo, name);
                let mut t = entity(&tid, EntityKind::Team, name, repo);
                t.relations.push(rel(RelationKind::DefinedIn, &repo_id));
                self.put(t);
                let mut members: BTreeSet<String> = team.members.iter().cloned().collect();
                members.extend(github_members.get(name).into_iter().flatten().cloned());
                for m in members {
                    self.user(repo, &m)
                        .relations
                        .push(rel(RelationKind::MemberOf, &tid));
                }
            }
            for (name, t) in &platform.environment_types {
                let mut e = entity(
                    &id(EntityKind::EnvironmentType, repo, name),
                    EntityKind::EnvironmentType,
                    name,
                    repo,
                );
                e.description = t.description.clone();
                e.identity = t.identity.clone();
                e.relations.push(rel(RelationKind::DefinedIn, &repo_id));
                self.put(e);
            }
        }
        if let Some(g) = governance {
            for (name, def) in g.catalog() {
                let Ok(def) = def else { continue };
                let mut e = entity(
                    &id(EntityKind::Template, repo, name),
                    EntityKind::Template,
                    name,
                    repo,
                );
                e.description = def
                    .definition
                    .description
                    .clone()
                    .or_else(|| def.definition.summary.clone());
                e.provider = Some(def.definition.runner.kind().to_string());
                e.relations.push(rel(RelationKind::DefinedIn, &repo_id));
                self.put(e);
            }
        }
        let ops: BTreeMap<i64, &OperationRecord> = ops.iter().map(|o| (o.id.0, o)).collect();
        for env in envs {
            let op = env.last_operation.and_then(|i| ops.get(&i.0).copied());
            self.add_environment(repo, env, op, links);
        }
    }

    fn add_environment(
        &mut self,
        repo: &RepoName,
        env: &EnvironmentRecord,
        op: Option<&OperationRecord>,
        links: &Links<'_>,
    ) {
        let eid = id(EntityKind::Environment, repo, &env.name);
        let mut e = entity(&eid, EntityKind::Environment, &env.name, repo);
        e.team = Some(env.team.to_string());
        e.user = Some(env.owner.to_string());
        e.provider = Some(env.definition.clone());
        e.state = Some(env.state.as_str().to_string());
        if let Some(d) = &env.drift {
            e.drift = Some(d.state.as_str().to_string());
            if let Some(n) = d.issue {
                e.links
                    .insert("driftIssue".into(), format!("{}/issues/{n}", links.web));
            }
        }
        e.links.insert(
            "audit".into(),
            format!(
                "{}/api/v1/repos/{repo}/environments/{}",
                links.public_url, env.name
            ),
        );
        if let Some(url) = public_outputs(&env.outputs)
            .get("url")
            .and_then(|u| u.get("value"))
            .and_then(|v| v.as_str())
        {
            match crate::links::web_url(url) {
                Some(url) => {
                    e.links.insert("url".into(), url.to_string());
                }
                None => e.url_text = Some(url.to_string()),
            }
        }
        e.relations.push(rel(
            RelationKind::OwnedBy,
            &id(EntityKind::Team, repo, &env.team),
        ));
        e.relations.push(rel(
            RelationKind::InstanceOf,
            &id(EntityKind::Template, repo, &env.definition),
        ));
        e.relations.push(rel(
            RelationKind::OfType,
            &id(EntityKind::EnvironmentType, repo, &env.env_type),
        ));
        e.relations
            .push(rel(RelationKind::DefinedIn, &repository_id(repo)));
        self.user(repo, &env.owner);
        if let Some(op) = op {
            let people = op_people(op);
            for (kind, login) in &people {
                e.relations
                    .push(rel(*kind, &id(EntityKind::User, repo, login)));
                self.user(repo, login);
            }
            if let Some(pr) = op.op.pr {
                e.links
                    .insert("pullRequest".into(), format!("{}/pull/{pr}", links.web));
            }
            e.links.insert(
                "mergeCommit".into(),
                format!("{}/commit/{}", links.web, op.op.merge_sha),
            );
            if let Some(d) = op.deployment_id {
                e.links.insert(
                    "deployment".into(),
                    format!("{}/deployments/{}", links.web, d.0),
                );
            }
            let oid = id(EntityKind::Operation, repo, &op.id.0.to_string());
            let mut o = entity(&oid, EntityKind::Operation, &op.id.0.to_string(), repo);
            o.team = Some(op.op.team.to_string());
            o.state = Some(op.state.as_str().to_string());
            o.provider = Some(op.op.kind.as_str().to_string());
            o.links.insert(
                "audit".into(),
                format!("{}/api/v1/operations/{}", links.public_url, op.id.0),
            );
            o.relations.push(rel(RelationKind::DefinedIn, &eid));
            o.relations.push(rel(
                RelationKind::OwnedBy,
                &id(EntityKind::Team, repo, &op.op.team),
            ));
            for (kind, login) in people {
                o.relations
                    .push(rel(kind, &id(EntityKind::User, repo, &login)));
            }
            self.put(o);
        }
        self.put(e);
    }

    fn put(&mut self, mut e: Entity) {
        e.relations.sort();
        e.relations.dedup();
        self.entities.insert(e.id.clone(), e);
    }

    fn user(&mut self, repo: &RepoName, login: &str) -> &mut Entity {
        let uid = id(EntityKind::User, repo, login);
        self.entities
            .entry(uid.clone())
            .or_insert_with(|| entity(&uid, EntityKind::User, login, repo))
    }

    /// Keeps the entities `keep` says yes to, and only the relations between them.
    pub fn retain(&mut self, keep: impl Fn(&Entity) -> bool) {
        self.entities.retain(|_, e| keep(e));
        let ids: BTreeSet<String> = self.entities.keys().cloned().collect();
        for e in self.entities.values_mut() {
            e.relations.retain(|r| ids.contains(&r.target));
        }
    }

    /// The relations pointing at `id`: `(type, source)`.
    pub fn incoming(&self, id: &str) -> Vec<Relation> {
        let mut out: Vec<Relation> = self
            .entities
            .values()
            .flat_map(|e| {
                e.relations
                    .iter()
                    .filter(|r| r.target == id)
                    .map(|r| Relation {
                        kind: r.kind,
                        target: e.id.clone(),
                    })
            })
            .collect();
        out.sort();
        out
    }
}

/// Who asked for, approved and merged an operation (`requestedBy`, `approvedBy`,
/// `deployedBy`).
fn op_people(op: &OperationRecord) -> Vec<(RelationKind, String)> {
    let mut out = Vec::new();
    out.push((RelationKind::RequestedBy, op.op.requester.to_string()));
    for a in &op.op.approvers {
        out.push((RelationKind::ApprovedBy, a.to_string()));
    }
    if let Some(merger) = &op.op.merger {
        out.push((RelationKind::DeployedBy, merger.to_string()));
    }
    out
}

fn entity(id: &str, kind: EntityKind, name: &str, repo: &RepoName) -> Entity {
    Entity {
        id: id.to_string(),
        kind,
        name: name.to_string(),
        repository: repo.to_string(),
        provider: None,
        team: None,
        user: None,
        description: None,
        state: None,
        drift: None,
        identity: None,
        links: BTreeMap::new(),
        relations: Vec::new(),
        url_text: None,
    }
}

fn rel(kind: RelationKind, target: &str) -> Relation {
    Relation {
        kind,
        target: target.to_string(),
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn the_kinds_list_names_every_kind() {
        let names: Vec<&str> = EntityKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, KINDS);
        for k in EntityKind::ALL {
            assert_eq!(EntityKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("json"), k.as_str());
        }
    }
}
