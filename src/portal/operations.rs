//! The Operations page, for platform admins: the queue, the deliveries that failed or were
//! retried, and the operations that have not finished (stuck ones marked). Anyone else
//! gets the page a missing one gets.

use super::{html, sign_in_page, Chrome, PortalState};
use crate::api::routes::repo_of;
use crate::identity::Caller;
use crate::store::DeliveryRecord;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// Planned or running for longer than this, an operation is marked as maybe stuck.
const STUCK_AFTER_MINUTES: i64 = 15;

pub(crate) struct Unfinished {
    pub id: i64,
    pub kind: String,
    pub repo: String,
    pub env: String,
    pub state: String,
    pub age: String,
    pub stuck: bool,
}

#[derive(Template)]
#[template(path = "portal/operations.html")]
struct OperationsPage {
    chrome: Chrome,
    repos: Vec<String>,
    /// The caller administers every repository Paved serves, so may see the whole queue.
    queue: bool,
    counts: Vec<(String, u64)>,
    oldest_pending: Option<String>,
    deliveries: Vec<DeliveryRecord>,
    operations: Vec<Unfinished>,
    stuck_after: i64,
}

fn age(since: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(since?).ok()?;
    Some(now - t.with_timezone(&chrono::Utc))
}

fn words(d: chrono::Duration) -> String {
    let m = d.num_minutes();
    match m {
        i64::MIN..=0 => format!("{} s", d.num_seconds().max(0)),
        1..=119 => format!("{m} min"),
        _ => format!("{} h {} min", m / 60, m % 60),
    }
}

/// `GET /operations`.
pub(super) async fn page(State(s): State<PortalState>, headers: HeaderMap) -> Response {
    let Some(sess) = s.session(&headers) else {
        return sign_in_page(&s, &headers, "/operations");
    };
    let caller = Caller::User(sess.login.clone());
    let mut repos = Vec::new();
    let served = s.api.directory.served().await;
    for repo in &served {
        if s.api.access(&caller, repo).await.admin {
            repos.push(repo.clone());
        }
    }
    // The queue's counts are of every repository: shown to those who administer them all.
    let all = repos.len() == served.len();
    if repos.is_empty() {
        return super::pages::not_found(&sess, "page");
    }
    let unavailable = || {
        super::refused(
            Some(&sess),
            StatusCode::SERVICE_UNAVAILABLE,
            "Paved cannot read its database just now.",
        )
    };
    let (Ok(counts), Ok(oldest), Ok(troubled)) = (
        s.api.store.delivery_counts().await,
        s.api.store.oldest_pending_ms().await,
        s.api.store.troubled_deliveries(100).await,
    ) else {
        return unavailable();
    };
    // Ages against the store's own timestamps: the machine's time.
    let now = crate::clock::wall();
    let mut operations = Vec::new();
    for repo in &repos {
        let Ok(ops) = s.api.store.unfinished_operations(repo).await else {
            return unavailable();
        };
        for o in ops {
            let since = o.started_at.as_deref().or(Some(o.created_at.as_str()));
            let a = age(since, now);
            operations.push(Unfinished {
                id: o.id.0,
                kind: o.op.kind.as_str().to_string(),
                repo: repo.to_string(),
                env: o.op.env_name.to_string(),
                state: o.state.as_str().to_string(),
                age: a.map(words).unwrap_or_default(),
                stuck: a.is_some_and(|a| a.num_minutes() >= STUCK_AFTER_MINUTES),
            });
        }
    }
    let page = OperationsPage {
        chrome: Chrome::of(&sess),
        repos: repos.iter().map(ToString::to_string).collect(),
        queue: all,
        counts: if all {
            counts.into_iter().collect()
        } else {
            Vec::new()
        },
        oldest_pending: oldest
            .filter(|_| all)
            .map(|ms| words(chrono::Duration::milliseconds(now.timestamp_millis() - ms))),
        // Only the deliveries of repositories this admin administers.
        deliveries: troubled
            .into_iter()
            .filter(|d| repo_of(&d.queue_key).is_some_and(|r| repos.contains(&r)))
            .collect(),
        operations,
        stuck_after: STUCK_AFTER_MINUTES,
    };
    html(page.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_words_and_keys_name_their_repository() {
        assert_eq!(words(chrono::Duration::seconds(42)), "42 s");
        assert_eq!(words(chrono::Duration::minutes(16)), "16 min");
        assert_eq!(words(chrono::Duration::minutes(135)), "2 h 15 min");
        use crate::ids::RepoName;
        assert_eq!(repo_of("o/r#7"), RepoName::parse("o/r").ok());
        assert_eq!(repo_of("o/r@push"), RepoName::parse("o/r").ok());
        assert_eq!(repo_of("nonsense"), None);
    }
}
