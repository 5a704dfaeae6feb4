//! The lifecycle's durable state (SPEC 11): timers that fall due by the scheduler's clock,
//! the scheduler's own lease (one replica runs it at a time), and each environment's last
//! drift check.

use super::{DriftState, StoreError};
use crate::ids::RepoName;
use async_trait::async_trait;

/// What a timer sets off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// The owner is told the environment expires soon.
    Warn,
    /// `expiresAt`: the environment is deleted.
    Expire,
    /// The schedule's stop time.
    Stop,
    /// The schedule's start time.
    Start,
    /// The next drift check.
    Drift,
    /// `deploy` again with the last parameters, asked for by someone with the rights
    /// (`/paved reconcile`, `POST …/reconcile`); the cause names them.
    Reconcile,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Warn => "warn",
            TimerKind::Expire => "expire",
            TimerKind::Stop => "stop",
            TimerKind::Start => "start",
            TimerKind::Drift => "drift",
            TimerKind::Reconcile => "reconcile",
        }
    }
    pub fn parse(s: &str) -> Option<TimerKind> {
        Some(match s {
            "warn" => TimerKind::Warn,
            "expire" => TimerKind::Expire,
            "stop" => TimerKind::Stop,
            "start" => TimerKind::Start,
            "drift" => TimerKind::Drift,
            "reconcile" => TimerKind::Reconcile,
            _ => return None,
        })
    }
}

/// One timer of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub repo: RepoName,
    pub env_name: String,
    pub kind: TimerKind,
    /// Unix milliseconds by the scheduler's clock; `None` once it fired (kept so the same
    /// cause is not set off twice).
    pub due_at: Option<i64>,
    /// What it is for (`2026-12-31T00:00:00Z` for an expiry and its warning, the local date
    /// and time of a stop). Setting it again for the same cause changes nothing.
    pub cause: String,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// Sets the environment's timer of this kind: a new cause replaces what was there (and
    /// revives a fired one); the same cause leaves it as it is.
    async fn set_timer(&self, timer: &Timer) -> Result<(), StoreError>;
    /// Removes the environment's timers of these kinds (all when `kinds` is empty).
    async fn clear_timers(
        &self,
        repo: &RepoName,
        env_name: &str,
        kinds: &[TimerKind],
    ) -> Result<(), StoreError>;
    /// Timers due at or before `now_ms`, soonest first, at most `limit`.
    async fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<Timer>, StoreError>;
    /// An environment's timers, by kind.
    async fn timers_of(&self, repo: &RepoName, env_name: &str) -> Result<Vec<Timer>, StoreError>;
    /// The timer fired for `cause`: it becomes `next` (the next stop, the next check), or is
    /// kept as fired. Applies only while the row still holds `cause` (a sync that moved it
    /// meanwhile wins). Returns whether it applied.
    async fn fired_timer(
        &self,
        fired: &Timer,
        next: Option<(i64, String)>,
    ) -> Result<bool, StoreError>;
    /// Takes (or renews) the scheduler's lease for `holder` until `ttl` from now, by the
    /// database's clock; its epoch, or `None` while another replica holds it.
    async fn try_scheduler_lease(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError>;
    /// Gives the lease up (a clean stop), so another replica takes over at once.
    async fn release_scheduler_lease(&self, holder: &str) -> Result<(), StoreError>;
    /// Records a drift check's result on the environment's row.
    async fn record_drift(
        &self,
        repo: &RepoName,
        env_name: &str,
        state: DriftState,
        summary: &str,
        checked_at_ms: i64,
    ) -> Result<(), StoreError>;
    /// How many environments are in each state, and (as `drifted`) how many live ones
    /// the last drift check found drifted: `paved_environments` in `/metrics`.
    async fn environment_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The environment whose open drift issue is `issue`, if any.
    async fn environment_of_drift_issue(
        &self,
        repo: &RepoName,
        issue: u64,
    ) -> Result<Option<String>, StoreError>;
    /// Records the GitHub issue telling of the drift (`None`: closed).
    async fn set_drift_issue(
        &self,
        repo: &RepoName,
        env_name: &str,
        issue: Option<u64>,
    ) -> Result<(), StoreError>;
}

/// The scheduler's lease is a row of `env_locks` whose repository is empty: no repository
/// is named so, so it never clashes with an environment's lock.
pub(super) const SCHEDULER_LEASE: (&str, &str) = ("", "scheduler");

pub(super) const SET: &str = "INSERT INTO timers (repo, env_name, kind, due_at, cause) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (repo, env_name, kind) DO UPDATE SET due_at = excluded.due_at, \
     cause = excluded.cause WHERE timers.cause <> excluded.cause";
pub(super) const CLEAR_ALL: &str = "DELETE FROM timers WHERE repo = $1 AND env_name = $2";
pub(super) const CLEAR_KIND: &str =
    "DELETE FROM timers WHERE repo = $1 AND env_name = $2 AND kind = $3";
pub(super) const DUE: &str = "SELECT repo, env_name, kind, due_at, cause FROM timers \
     WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at, repo, env_name, kind LIMIT $2";
pub(super) const OF: &str = "SELECT repo, env_name, kind, due_at, cause FROM timers \
     WHERE repo = $1 AND env_name = $2 ORDER BY kind";
pub(super) const FIRED: &str = "UPDATE timers SET due_at = $5, cause = $6 \
     WHERE repo = $1 AND env_name = $2 AND kind = $3 AND cause = $4";
pub(super) const DRIFT: &str = "UPDATE environments SET drift = $3, drift_summary = $4, \
     drift_checked_at = $5 WHERE repo = $1 AND name = $2";
pub(super) const DRIFT_ISSUE: &str =
    "UPDATE environments SET drift_issue = $3 WHERE repo = $1 AND name = $2";

pub(super) const COUNTS: &str = "SELECT state, COUNT(*) FROM environments GROUP BY state \
     UNION ALL SELECT 'drifted', COUNT(*) FROM environments \
     WHERE drift = 'drifted' AND state <> 'deleted'";
pub(super) const OF_ISSUE: &str =
    "SELECT name FROM environments WHERE repo = $1 AND drift_issue = $2";

pub(super) type Row = (String, String, String, Option<i64>, String);

pub(super) fn from_row((repo, env_name, kind, due_at, cause): Row) -> Result<Timer, StoreError> {
    Ok(Timer {
        repo: RepoName::parse(&repo)
            .map_err(|e| StoreError::Corrupt(format!("timer repository {repo:?}: {e}")))?,
        kind: TimerKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("timer kind {kind:?}")))?,
        env_name,
        due_at,
        cause,
    })
}

/// [`LifecycleStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_lifecycle_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::LifecycleStore for $store {
            async fn set_timer(
                &self,
                timer: &$crate::store::Timer,
            ) -> Result<(), $crate::store::StoreError> {
                let t = timer.clone();
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::lifecycle::SET);
                        sqlx::query(&q)
                            .bind(t.repo.to_string())
                            .bind(t.env_name.as_str())
                            .bind(t.kind.as_str())
                            .bind(t.due_at)
                            .bind(&t.cause)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn clear_timers(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
                kinds: &[$crate::store::TimerKind],
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, env_name) = (repo.to_string(), env_name.to_owned());
                let kinds: Vec<&'static str> = kinds.iter().map(|k| k.as_str()).collect();
                self.write(move |conn| {
                    Box::pin(async move {
                        if kinds.is_empty() {
                            let q = $sql($crate::store::lifecycle::CLEAR_ALL);
                            sqlx::query(&q)
                                .bind(&repo)
                                .bind(&env_name)
                                .execute(&mut *conn)
                                .await?;
                        }
                        for kind in &kinds {
                            let q = $sql($crate::store::lifecycle::CLEAR_KIND);
                            sqlx::query(&q)
                                .bind(&repo)
                                .bind(&env_name)
                                .bind(*kind)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn due_timers(
                &self,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::Timer>, $crate::store::StoreError> {
                let q = $sql($crate::store::lifecycle::DUE);
                let rows: Vec<$crate::store::lifecycle::Row> = sqlx::query_as(&q)
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.into_iter()
                    .map($crate::store::lifecycle::from_row)
                    .collect()
            }

            async fn timers_of(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
            ) -> Result<Vec<$crate::store::Timer>, $crate::store::StoreError> {
                let q = $sql($crate::store::lifecycle::OF);
                let rows: Vec<$crate::store::lifecycle::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(env_name)
                    .fetch_all(self.reader())
                    .await?;
                rows.into_iter()
                    .map($crate::store::lifecycle::from_row)
                    .collect()
            }

            async fn fired_timer(
                &self,
                fired: &$crate::store::Timer,
                next: Option<(i64, String)>,
            ) -> Result<bool, $crate::store::StoreError> {
                let t = fired.clone();
                let (due, cause) = match next {
                    Some((due, cause)) => (Some(due), cause),
                    None => (None, t.cause.clone()),
                };
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::lifecycle::FIRED);
                        let done = sqlx::query(&q)
                            .bind(t.repo.to_string())
                            .bind(t.env_name.as_str())
                            .bind(t.kind.as_str())
                            .bind(&t.cause)
                            .bind(due)
                            .bind(&cause)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn try_scheduler_lease(
                &self,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                let holder = holder.to_owned();
                let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
                let (repo, name) = $crate::store::lifecycle::SCHEDULER_LEASE;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::locks::TRY_LOCK);
                        let epoch: Option<i64> = sqlx::query_scalar(&q)
                            .bind(repo)
                            .bind(name)
                            .bind(&holder)
                            .bind(ttl)
                            .fetch_optional(&mut *conn)
                            .await?;
                        Ok(epoch)
                    })
                })
                .await
            }

            async fn release_scheduler_lease(
                &self,
                holder: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let holder = holder.to_owned();
                let (repo, name) = $crate::store::lifecycle::SCHEDULER_LEASE;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::locks::UNLOCK);
                        sqlx::query(&q)
                            .bind(repo)
                            .bind(name)
                            .bind(&holder)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn record_drift(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
                state: $crate::store::DriftState,
                summary: &str,
                checked_at_ms: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, env_name, summary) =
                    (repo.to_string(), env_name.to_owned(), summary.to_owned());
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::lifecycle::DRIFT);
                        sqlx::query(&q)
                            .bind(&repo)
                            .bind(&env_name)
                            .bind(state.as_str())
                            .bind(&summary)
                            .bind(checked_at_ms)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn environment_counts(
                &self,
            ) -> Result<Vec<(String, u64)>, $crate::store::StoreError> {
                let q = $sql($crate::store::lifecycle::COUNTS);
                let rows: Vec<(String, i64)> = sqlx::query_as(&q).fetch_all(self.reader()).await?;
                Ok(rows
                    .into_iter()
                    .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
                    .collect())
            }

            async fn environment_of_drift_issue(
                &self,
                repo: &$crate::ids::RepoName,
                issue: u64,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                let q = $sql($crate::store::lifecycle::OF_ISSUE);
                let issue = $crate::store::rows::to_i64(issue, "issue number")?;
                Ok(sqlx::query_scalar(&q)
                    .bind(repo.to_string())
                    .bind(issue)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn set_drift_issue(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
                issue: Option<u64>,
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, env_name) = (repo.to_string(), env_name.to_owned());
                let issue = issue
                    .map(|i| $crate::store::rows::to_i64(i, "issue number"))
                    .transpose()?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::lifecycle::DRIFT_ISSUE);
                        sqlx::query(&q)
                            .bind(&repo)
                            .bind(&env_name)
                            .bind(issue)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_lifecycle_store;
