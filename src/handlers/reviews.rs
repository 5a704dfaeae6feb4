//! A pull request's reviews, as the approval check and the audit note see them.

use super::WorkError;
use crate::checks::{Review, ReviewState};
use crate::event::PrInfo;
use crate::forge::client::GitHub;

/// Approvers (reviews' users, as GitHub names them) as logins; a name that is none is left
/// out.
pub fn as_logins(names: &[String]) -> Vec<crate::ids::Login> {
    names
        .iter()
        .filter_map(|n| crate::ids::Login::parse(n).ok())
        .collect()
}

/// The pull request's reviews, oldest first (states Paved does not know are left out).
pub async fn reviews_of(gh: &GitHub, pr: &PrInfo) -> Result<Vec<Review>, WorkError> {
    Ok(gh
        .list_reviews(&pr.repo, pr.number)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(Review {
                id: r.id,
                user: r.user?.login,
                state: ReviewState::parse(&r.state)?,
                commit_id: r.commit_id,
                digest: None,
            })
        })
        .collect())
}

/// Reviewers whose latest approving-or-blocking review approves, the author excepted
/// (what policies see as `data.paved.approvers` and the audit note records).
pub fn approvers_in(reviews: &[Review], author: &str) -> Vec<String> {
    use ReviewState as S;
    let mut latest: std::collections::BTreeMap<String, S> = Default::default();
    for r in reviews {
        if matches!(r.state, S::Commented | S::Pending) {
            continue;
        }
        latest.insert(r.user.to_ascii_lowercase(), r.state);
    }
    let mut out: Vec<String> = Vec::new();
    for r in reviews {
        let key = r.user.to_ascii_lowercase();
        if latest.get(&key) == Some(&S::Approved)
            && !r.user.eq_ignore_ascii_case(author)
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&r.user))
        {
            out.push(r.user.clone());
        }
    }
    out
}
