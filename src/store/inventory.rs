//! The inventory: one row per environment Paved knows, its state, last parameters and
//! (public and sensitive) outputs, and its kept `ADE_STORAGE`.

use super::{NewOperation, StoreError};
use crate::ids::{EnvName, Login, OperationId, RepoName, TeamName};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where an environment is in its life, as the inventory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvState {
    /// A deploy is running (first or update).
    Provisioning,
    /// The last deploy succeeded.
    Ready,
    /// The last operation failed or was interrupted; the environment may be half made.
    Failed,
    /// A delete is running.
    Deleting,
    /// The last delete succeeded. The row stays, so the inventory keeps the history.
    Deleted,
    /// Its schedule stopped it (`stop.sh` succeeded); `start.sh` brings it back.
    Stopped,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Provisioning => "provisioning",
            EnvState::Ready => "ready",
            EnvState::Failed => "failed",
            EnvState::Deleting => "deleting",
            EnvState::Deleted => "deleted",
            EnvState::Stopped => "stopped",
        }
    }
    pub fn parse(s: &str) -> Option<EnvState> {
        Some(match s {
            "provisioning" => EnvState::Provisioning,
            "ready" => EnvState::Ready,
            "failed" => EnvState::Failed,
            "deleting" => EnvState::Deleting,
            "deleted" => EnvState::Deleted,
            "stopped" => EnvState::Stopped,
            _ => return None,
        })
    }
    /// Counts against the team's quota: everything but `deleted`.
    pub fn is_live(self) -> bool {
        self != EnvState::Deleted
    }
}

/// Which environments a page keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentFilter {
    /// Only these teams' (`None`: every team's).
    pub teams: Option<Vec<String>>,
    /// Only names containing this, case-insensitively.
    pub name_contains: Option<String>,
}

impl EnvironmentFilter {
    /// `teams` as one text for `strpos`: `,a,b,`. A team with a comma in its name is left
    /// out: no environment's team (a DNS label) has one, and it could match across two.
    pub(super) fn team_list(&self) -> Option<String> {
        self.teams.as_ref().map(|teams| {
            let mut list = String::from(",");
            for t in teams.iter().filter(|t| !t.contains(',')) {
                list.push_str(t);
                list.push(',');
            }
            list
        })
    }
}

/// The filter of [`InventoryStore::environment_page`]: `$2` the team list (see
/// [`EnvironmentFilter::team_list`]) or NULL, `$3` the lowercased name part or NULL.
macro_rules! page_filter {
    () => {
        "repo = $1 AND ($2 IS NULL OR strpos($2, ',' || team || ',') > 0) \
         AND ($3 IS NULL OR strpos(lower(name), $3) > 0)"
    };
}
pub(super) use page_filter;

/// One environment in the inventory, keyed by (repo, name): names are unique per repo.
/// The API answers with `api::answers::Environment`, which leaves sensitive outputs out.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentRecord {
    pub repo: RepoName,
    pub name: EnvName,
    pub team: TeamName,
    pub owner: Login,
    pub env_type: String,
    pub definition: String,
    pub state: EnvState,
    /// The parameters of the last deploy (JSON object).
    pub parameters: serde_json::Value,
    /// Outputs of the last successful deploy, in ADE's shape
    /// (`{"name": {"type": ..., "value": ..., "sensitive": bool}}`). The store keeps the
    /// sensitive ones too ([`EnvironmentRecord::public`] drops them); the API answers
    /// with the public ones only.
    pub outputs: serde_json::Value,
    /// Id of the last operation on this environment.
    pub last_operation: Option<OperationId>,
    /// RFC 3339, set by the store on every write.
    pub updated_at: String,
    /// The last drift check (SPEC 11); `None` until one ran.
    pub drift: Option<Drift>,
    /// The merge commit of the environment's last governed change (SPEC 12): its manifest
    /// as governed is read there. `None` before one was recorded.
    pub governed_sha: Option<String>,
    /// Where its definition is read: `governed_sha`, or the first parent of a fork's merge.
    pub code_sha: Option<String>,
    /// Which life of the name this is (SPEC 12): 1, then one more for each deploy after a
    /// successful delete.
    pub generation: i64,
    /// The id of the current generation's first operation: the environment's operations
    /// are its team's from this one on (`None`: rows from before generations; all).
    pub generation_since: Option<OperationId>,
}

/// What the last drift check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    /// `status.sh` exited 0 (Terraform: the plan had no changes).
    InSync,
    /// `status.sh` exited 2 (Terraform: the plan had changes).
    Drifted,
    /// Anything else: the check could not tell.
    Unknown,
}

impl DriftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in_sync",
            DriftState::Drifted => "drifted",
            DriftState::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<DriftState> {
        Some(match s {
            "in_sync" => DriftState::InSync,
            "drifted" => DriftState::Drifted,
            "unknown" => DriftState::Unknown,
            _ => return None,
        })
    }
}

/// An environment's last drift check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drift {
    pub state: DriftState,
    /// What the check printed (capped, redacted).
    pub summary: String,
    /// RFC 3339.
    pub checked_at: String,
    /// The GitHub issue that tells of it, while one is open.
    pub issue: Option<u64>,
}

impl EnvironmentRecord {
    /// The record with sensitive outputs removed (what the API and Git may show).
    pub fn public(&self) -> EnvironmentRecord {
        let mut r = self.clone();
        r.outputs = public_outputs(&self.outputs);
        r
    }

    /// Whether `op` is this environment's (SPEC 12): its team's, in its current generation.
    /// Another team's operations on the same name, or those of a generation that a delete
    /// ended, are not, in the API and the portal alike.
    pub fn owns(&self, op: &super::OperationRecord) -> bool {
        op.op.team == self.team && self.generation_since.is_none_or(|since| op.id.0 >= since.0)
    }
}

/// Outputs without the ones marked `"sensitive": true`.
pub fn public_outputs(outputs: &serde_json::Value) -> serde_json::Value {
    match outputs {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(_, v)| v.get("sensitive").and_then(|s| s.as_bool()) != Some(true))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => serde_json::Value::Object(Default::default()),
    }
}

/// The inventory change made together with an operation's state change.
#[derive(Debug, Clone)]
pub struct EnvironmentUpdate {
    pub repo: RepoName,
    pub name: EnvName,
    pub team: TeamName,
    pub owner: Login,
    pub env_type: String,
    pub definition: String,
    pub state: EnvState,
    /// `None` keeps the stored value.
    pub parameters: Option<serde_json::Value>,
    /// `None` keeps the stored value.
    pub outputs: Option<serde_json::Value>,
    pub last_operation: Option<OperationId>,
    /// This write starts a new generation (a deploy of a deleted environment), whose first
    /// operation is `last_operation`.
    pub new_generation: bool,
}

impl EnvironmentUpdate {
    /// The inventory row of `op`'s environment in `state`, with `last_operation` set and
    /// parameters and outputs kept as stored.
    pub fn of(
        op: &NewOperation,
        state: EnvState,
        last_operation: OperationId,
    ) -> EnvironmentUpdate {
        EnvironmentUpdate {
            repo: op.repo.clone(),
            name: op.env_name.clone(),
            team: op.team.clone(),
            owner: op.owner.clone(),
            env_type: op.env_type.clone(),
            definition: op.definition.clone(),
            state,
            parameters: None,
            outputs: None,
            last_operation: Some(last_operation),
            new_generation: false,
        }
    }
}

#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    async fn environment(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError>;
    /// All environments, of one repository or of all, ordered by repo then name (bytes).
    async fn environments(
        &self,
        repo: Option<&RepoName>,
    ) -> Result<Vec<EnvironmentRecord>, StoreError>;
    /// The environments of `repo` that `filter` keeps, by name (bytes): how many there are,
    /// and `limit` of them from `offset`. A page is chosen in the database, so reading one
    /// takes time that does not grow with the inventory.
    async fn environment_page(
        &self,
        repo: &RepoName,
        filter: &EnvironmentFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<EnvironmentRecord>), StoreError>;
    /// Insert or update the inventory row.
    async fn upsert_environment(&self, env: EnvironmentUpdate) -> Result<(), StoreError>;
    /// The `ADE_STORAGE` archive kept for an environment (a tar), if any.
    async fn environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set_environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
        archive: Vec<u8>,
    ) -> Result<(), StoreError>;
    /// Records the environment's last governed change (SPEC 12): its manifest is read at
    /// `governed_sha` and its definition at `code_sha` by every later job. Does nothing for
    /// an environment the inventory does not hold.
    async fn set_governed(
        &self,
        repo: &RepoName,
        name: &str,
        governed_sha: &str,
        code_sha: &str,
    ) -> Result<(), StoreError>;
    /// Paths a push changed without a governed pull request, and the commit that did it.
    async fn flag_ungoverned(
        &self,
        repo: &RepoName,
        paths: &[String],
        commit: &str,
        pusher: &str,
    ) -> Result<(), StoreError>;
    /// The ungoverned paths of `repo`: (path, commit), by path.
    async fn ungoverned(&self, repo: &RepoName) -> Result<Vec<(String, String)>, StoreError>;
    /// A governed pull request changed these paths again: they run again.
    async fn clear_ungoverned(&self, repo: &RepoName, paths: &[String]) -> Result<(), StoreError>;
}

/// An inventory row to write, with its JSON already encoded.
pub(super) struct EnvRow {
    pub repo: String,
    pub name: String,
    pub team: String,
    pub owner: String,
    pub env_type: String,
    pub definition: String,
    pub state: &'static str,
    pub parameters: Option<String>,
    pub outputs: Option<String>,
    pub last_operation: Option<i64>,
    pub new_generation: bool,
}

impl EnvRow {
    pub(super) fn of(env: &EnvironmentUpdate) -> Result<EnvRow, StoreError> {
        use super::rows::to_json;
        Ok(EnvRow {
            repo: env.repo.to_string(),
            name: env.name.to_string(),
            team: env.team.to_string(),
            owner: env.owner.to_string(),
            env_type: env.env_type.clone(),
            definition: env.definition.clone(),
            state: env.state.as_str(),
            parameters: env
                .parameters
                .as_ref()
                .map(|p| to_json(p, "parameters"))
                .transpose()?,
            outputs: env
                .outputs
                .as_ref()
                .map(|o| to_json(o, "outputs"))
                .transpose()?,
            last_operation: env.last_operation.map(|o| o.0),
            new_generation: env.new_generation,
        })
    }
}

/// Inserts or updates an inventory row. $8 / $9 NULL: keep the stored parameters /
/// outputs ('{}' for a new row). $10 NULL keeps the stored last operation too: once there
/// was one, it stays the last until another replaces it. $11 TRUE starts the next
/// generation, whose first operation is $10 (a new row is generation 1 from $10). Bind
/// with [`bind_env`].
pub(super) const UPSERT_ENV: &str =
    "INSERT INTO environments (repo, name, team, owner, env_type, definition, \
     state, parameters, outputs, last_operation, updated_at, generation, generation_since) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}'), \
     COALESCE($9, '{}'), $10, paved_now_ms(), 1, $10) \
     ON CONFLICT (repo, name) DO UPDATE SET team = excluded.team, \
     owner = excluded.owner, env_type = excluded.env_type, \
     definition = excluded.definition, state = excluded.state, \
     parameters = COALESCE($8, environments.parameters), \
     outputs = COALESCE($9, environments.outputs), \
     last_operation = COALESCE($10, environments.last_operation), \
     updated_at = excluded.updated_at, \
     generation = CASE WHEN $11 THEN environments.generation + 1 \
         ELSE environments.generation END, \
     generation_since = CASE WHEN $11 THEN $10 ELSE environments.generation_since END";
pub(super) const SET_STORAGE: &str =
    "UPDATE environments SET storage = $3 WHERE repo = $1 AND name = $2";
pub(super) const STORAGE: &str = "SELECT storage FROM environments WHERE repo = $1 AND name = $2";
pub(super) const SET_GOVERNED: &str =
    "UPDATE environments SET governed_sha = $3, code_sha = $4 WHERE repo = $1 AND name = $2";
pub(super) const FLAG_UNGOVERNED: &str =
    "INSERT INTO ungoverned_paths (repo, path, commit_sha, pusher) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (repo, path) DO UPDATE SET commit_sha = excluded.commit_sha, \
     pusher = excluded.pusher";
pub(super) const UNGOVERNED: &str =
    "SELECT path, commit_sha FROM ungoverned_paths WHERE repo = $1 ORDER BY path COLLATE \"C\"";
pub(super) const CLEAR_UNGOVERNED: &str =
    "DELETE FROM ungoverned_paths WHERE repo = $1 AND path = $2";

/// Binds an [`EnvRow`] to [`UPSERT_ENV`].
macro_rules! bind_env {
    ($q:expr, $row:expr) => {
        $q.bind(&$row.repo)
            .bind(&$row.name)
            .bind(&$row.team)
            .bind(&$row.owner)
            .bind(&$row.env_type)
            .bind(&$row.definition)
            .bind($row.state)
            .bind(&$row.parameters)
            .bind(&$row.outputs)
            .bind($row.last_operation)
            .bind($row.new_generation)
    };
}
pub(super) use bind_env;

/// [`InventoryStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_inventory_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::InventoryStore for $store {
            async fn environment(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
            ) -> Result<Option<$crate::store::EnvironmentRecord>, $crate::store::StoreError> {
                let q = $sql(concat!(
                    "SELECT ",
                    $crate::store::rows::env_columns!(),
                    " FROM environments WHERE repo = $1 AND name = $2"
                ));
                let row = sqlx::query(&q)
                    .bind(repo.to_string())
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref()
                    .map($crate::store::rows::environment_from_row)
                    .transpose()
            }

            async fn environment_page(
                &self,
                repo: &$crate::ids::RepoName,
                filter: &$crate::store::EnvironmentFilter,
                offset: u64,
                limit: u64,
            ) -> Result<(u64, Vec<$crate::store::EnvironmentRecord>), $crate::store::StoreError>
            {
                let teams = filter.team_list();
                let part = filter.name_contains.as_deref().map(str::to_lowercase);
                let count = $sql(concat!(
                    "SELECT COUNT(*) FROM environments WHERE ",
                    $crate::store::inventory::page_filter!()
                ));
                let (total,): (i64,) = sqlx::query_as(&count)
                    .bind(repo.to_string())
                    .bind(&teams)
                    .bind(&part)
                    .fetch_one(self.reader())
                    .await?;
                let total = u64::try_from(total).unwrap_or(0);
                if limit == 0 || offset >= total {
                    return Ok((total, Vec::new()));
                }
                let q = $sql(concat!(
                    "SELECT ",
                    $crate::store::rows::env_columns!(),
                    " FROM environments WHERE ",
                    $crate::store::inventory::page_filter!(),
                    " ORDER BY name COLLATE \"C\" LIMIT $4 OFFSET $5"
                ));
                let rows = sqlx::query(&q)
                    .bind(repo.to_string())
                    .bind(&teams)
                    .bind(&part)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(self.reader())
                    .await?;
                let page = rows
                    .iter()
                    .map($crate::store::rows::environment_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((total, page))
            }

            async fn environments(
                &self,
                repo: Option<&$crate::ids::RepoName>,
            ) -> Result<Vec<$crate::store::EnvironmentRecord>, $crate::store::StoreError> {
                // COLLATE "C": byte order on PostgreSQL whatever the database's collation,
                // as SQLite sorts.
                let rows = match repo {
                    Some(repo) => {
                        let q = $sql(concat!(
                            "SELECT ",
                            $crate::store::rows::env_columns!(),
                            " FROM environments WHERE repo = $1 ORDER BY name COLLATE \"C\""
                        ));
                        sqlx::query(&q)
                            .bind(repo.to_string())
                            .fetch_all(self.reader())
                            .await?
                    }
                    None => {
                        let q = $sql(concat!(
                            "SELECT ",
                            $crate::store::rows::env_columns!(),
                            " FROM environments ORDER BY repo COLLATE \"C\", name COLLATE \"C\""
                        ));
                        sqlx::query(&q).fetch_all(self.reader()).await?
                    }
                };
                rows.iter()
                    .map($crate::store::rows::environment_from_row)
                    .collect()
            }

            async fn upsert_environment(
                &self,
                env: $crate::store::EnvironmentUpdate,
            ) -> Result<(), $crate::store::StoreError> {
                let row = $crate::store::inventory::EnvRow::of(&env)?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::inventory::UPSERT_ENV);
                        $crate::store::inventory::bind_env!(sqlx::query(&q), row)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn environment_storage(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
            ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                let q = $sql($crate::store::inventory::STORAGE);
                let row: Option<Option<Vec<u8>>> = sqlx::query_scalar(&q)
                    .bind(repo.to_string())
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.flatten())
            }

            async fn set_environment_storage(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
                archive: Vec<u8>,
            ) -> Result<(), $crate::store::StoreError> {
                let repo = repo.to_string();
                let name = name.to_owned();
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::inventory::SET_STORAGE);
                        let done = sqlx::query(&q)
                            .bind(&repo)
                            .bind(&name)
                            .bind(archive)
                            .execute(&mut *conn)
                            .await?;
                        if done.rows_affected() == 0 {
                            return Err($crate::store::rows::invalid(format!(
                                "environment {name} of {repo} does not exist: its storage has \
                                 nowhere to go"
                            )));
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn set_governed(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
                governed_sha: &str,
                code_sha: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let args = (
                    repo.to_string(),
                    name.to_owned(),
                    governed_sha.to_owned(),
                    code_sha.to_owned(),
                );
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::inventory::SET_GOVERNED);
                        sqlx::query(&q)
                            .bind(&args.0)
                            .bind(&args.1)
                            .bind(&args.2)
                            .bind(&args.3)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn flag_ungoverned(
                &self,
                repo: &$crate::ids::RepoName,
                paths: &[String],
                commit: &str,
                pusher: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, paths, commit, pusher) = (
                    repo.to_string(),
                    paths.to_vec(),
                    commit.to_owned(),
                    pusher.to_owned(),
                );
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::inventory::FLAG_UNGOVERNED);
                        for path in &paths {
                            sqlx::query(&q)
                                .bind(&repo)
                                .bind(path)
                                .bind(&commit)
                                .bind(&pusher)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn ungoverned(
                &self,
                repo: &$crate::ids::RepoName,
            ) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                let q = $sql($crate::store::inventory::UNGOVERNED);
                Ok(sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn clear_ungoverned(
                &self,
                repo: &$crate::ids::RepoName,
                paths: &[String],
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, paths) = (repo.to_string(), paths.to_vec());
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::inventory::CLEAR_UNGOVERNED);
                        for path in &paths {
                            sqlx::query(&q)
                                .bind(&repo)
                                .bind(path)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_inventory_store;
