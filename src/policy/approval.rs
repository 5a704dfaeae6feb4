//! Who may approve and who may change: `paved/approval` and environment ownership.
//!
//! Team membership is behind [`Membership`], passed in by the caller. Today it is answered
//! from `platform.yaml`'s `teams.<team>.members` ([`Platform`] implements it); GitHub teams
//! resolved through the API can implement it later without touching the rules here.
//!
//! **Approvals** ([`evaluate_approvals`]). Each reviewer's latest review among `APPROVED`,
//! `CHANGES_REQUESTED` and `DISMISSED` is their standing (`COMMENTED` and `PENDING` change
//! nothing). An approval counts for an alternative `{ team, count }` when the reviewer is
//! not the pull request's author, is a member of `team` and, with `dismissStale` (the
//! default), approved the current head commit. Any one alternative with `count` such
//! approvals is enough, unless a member of a team named in the rules has a standing
//! `CHANGES_REQUESTED`: that blocks until they approve or their review is dismissed.
//!
//! **Ownership** ([`may_change`]). An existing environment (its manifest on the default
//! branch) may be changed or deleted only by its owner, a member of its team, or a
//! platform approver (a member of a team named in `governance.approvers`).
//!
//! Logins compare case-insensitively, as GitHub's do.

use crate::manifest::platform::{Approvals, Platform};
use serde::{Deserialize, Serialize};

/// A review's state, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Dismissed,
    Commented,
    Pending,
}

impl ReviewState {
    /// GitHub's `state` of a review; `None` for a state Paved does not know.
    pub fn parse(s: &str) -> Option<ReviewState> {
        Some(match s {
            "APPROVED" => ReviewState::Approved,
            "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
            "DISMISSED" => ReviewState::Dismissed,
            "COMMENTED" => ReviewState::Commented,
            "PENDING" => ReviewState::Pending,
            _ => return None,
        })
    }
}

/// One review of the pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// GitHub's id of the review, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// GitHub login of the reviewer.
    pub user: String,
    pub state: ReviewState,
    /// The commit the review was made on.
    #[serde(default)]
    pub commit_id: Option<String>,
    /// The digest of the previews shown when the review was given (SPEC 14); `None`: none
    /// was recorded (no preview had been made), and only the commit decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Answers whether a GitHub login belongs to a team.
pub trait Membership {
    fn is_member(&self, team: &str, login: &str) -> bool;
}

/// Teams as `platform.yaml` lists their members.
impl Membership for Platform {
    fn is_member(&self, team: &str, login: &str) -> bool {
        self.teams.get(team).is_some_and(|t| t.has_member(login))
    }
}

/// No team has members (when `platform.yaml` could not be read).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMembers;

impl Membership for NoMembers {
    fn is_member(&self, _team: &str, _login: &str) -> bool {
        false
    }
}

/// What the reviews give against a set of approval rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalOutcome {
    pub pass: bool,
    /// Reviewers whose approval counts for at least one alternative, in review order.
    pub approvers: Vec<String>,
    /// One line: "approved by admin1, admin2", "needs 1 more approval from team platform",
    /// "changes requested by admin1; …".
    pub description: String,
    /// Members of a named team with a standing `CHANGES_REQUESTED`.
    pub blocking: Vec<String>,
}

/// One reviewer's standing.
struct Standing<'a> {
    login: &'a str,
    state: ReviewState,
    commit_id: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Evaluate `reviews` (oldest first) against `rules` (alternatives; any one is enough).
/// With `dismiss_stale`, an approval counts only when made on `head_sha`; when the head is
/// not known (`None`), staleness cannot be judged and approvals count. No rules: passes.
pub fn evaluate_approvals(
    rules: &[Approvals],
    reviews: &[Review],
    author: &str,
    head_sha: Option<&str>,
    dismiss_stale: bool,
    membership: &dyn Membership,
) -> ApprovalOutcome {
    evaluate_bound_approvals(
        rules,
        reviews,
        author,
        (head_sha, None),
        dismiss_stale,
        membership,
    )
}

/// [`evaluate_approvals`] with approvals bound to a preview too (SPEC 14): with
/// `dismiss_stale`, an approval counts only when made on the head (`at.0`) and, when the
/// current previews' digest is known (`at.1`), while those previews were shown (a review
/// with no recorded digest was given before any preview: only its commit decides).
pub fn evaluate_bound_approvals(
    rules: &[Approvals],
    reviews: &[Review],
    author: &str,
    at: (Option<&str>, Option<&str>),
    dismiss_stale: bool,
    membership: &dyn Membership,
) -> ApprovalOutcome {
    let (head_sha, preview_digest) = at;
    if rules.is_empty() {
        return ApprovalOutcome {
            pass: true,
            approvers: Vec::new(),
            description: "no approval required".to_string(),
            blocking: Vec::new(),
        };
    }
    // Latest standing per reviewer, in the order reviewers first appeared.
    let mut standings: Vec<Standing> = Vec::new();
    for r in reviews {
        if !matches!(
            r.state,
            ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Dismissed
        ) {
            continue;
        }
        let standing = Standing {
            login: &r.user,
            state: r.state,
            commit_id: r.commit_id.as_deref(),
            digest: r.digest.as_deref(),
        };
        match standings
            .iter_mut()
            .find(|s| s.login.eq_ignore_ascii_case(&r.user))
        {
            Some(s) => *s = standing,
            None => standings.push(standing),
        }
    }

    let is_author = |login: &str| !author.is_empty() && login.eq_ignore_ascii_case(author);
    let in_any_team = |login: &str| rules.iter().any(|a| membership.is_member(&a.team, login));
    let fresh = |commit: Option<&str>| match (dismiss_stale, head_sha) {
        (false, _) | (true, None) => true,
        (true, Some(head)) => commit.is_some_and(|c| c.eq_ignore_ascii_case(head)),
    };
    let same_preview = |digest: Option<&str>| match (dismiss_stale, preview_digest, digest) {
        (true, Some(now), Some(then)) => now == then,
        _ => true,
    };

    let mut approvers = Vec::new();
    let mut stale = Vec::new();
    let mut stale_preview = Vec::new();
    let mut blocking = Vec::new();
    for s in &standings {
        if is_author(s.login) || !in_any_team(s.login) {
            continue;
        }
        match s.state {
            ReviewState::Approved if fresh(s.commit_id) && same_preview(s.digest) => {
                approvers.push(s.login.to_string())
            }
            ReviewState::Approved if fresh(s.commit_id) => stale_preview.push(s.login.to_string()),
            ReviewState::Approved => stale.push(s.login.to_string()),
            ReviewState::ChangesRequested => blocking.push(s.login.to_string()),
            _ => {}
        }
    }

    // How many more each alternative needs.
    let missing: Vec<(&Approvals, usize)> = rules
        .iter()
        .map(|a| {
            let have = approvers
                .iter()
                .filter(|l| membership.is_member(&a.team, l))
                .count();
            (a, (a.count as usize).saturating_sub(have))
        })
        .collect();
    let satisfied = missing.iter().any(|(_, m)| *m == 0);
    let pass = satisfied && blocking.is_empty();

    let mut parts = Vec::new();
    if !blocking.is_empty() {
        parts.push(format!("changes requested by {}", blocking.join(", ")));
    }
    if !satisfied {
        let mut need = String::from("needs ");
        for (i, (a, m)) in missing.iter().enumerate() {
            if i == 0 {
                let noun = if *m == 1 { "approval" } else { "approvals" };
                need.push_str(&format!("{m} more {noun} from team {}", a.team));
            } else {
                need.push_str(&format!(", or {m} from team {}", a.team));
            }
        }
        parts.push(need);
        if !stale.is_empty() {
            parts.push(format!("{} approved an older commit", stale.join(", ")));
        }
        if !stale_preview.is_empty() {
            parts.push(format!(
                "{} approved a preview that has changed since",
                stale_preview.join(", ")
            ));
        }
    }
    let description = if pass {
        format!("approved by {}", approvers.join(", "))
    } else {
        parts.join("; ")
    };
    ApprovalOutcome {
        pass,
        approvers,
        description,
        blocking,
    }
}

/// Whether `login` may change or delete an existing environment whose manifest (on the
/// default branch) names `owner` and `team`: its owner, a member of its team, or a member
/// of a team named in `platform_approvers` (`governance.approvers`). An empty login (no
/// pull request, `paved check`) may.
pub fn may_change(
    login: &str,
    owner: Option<&str>,
    team: &str,
    platform_approvers: &[Approvals],
    membership: &dyn Membership,
) -> bool {
    login.is_empty()
        || owner.is_some_and(|o| o.eq_ignore_ascii_case(login))
        || membership.is_member(team, login)
        || platform_approvers
            .iter()
            .any(|a| membership.is_member(&a.team, login))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::platform::{parse_platform, PLATFORM_PATH};

    const PLATFORM: &str = "\
teams:
  payments: { members: [octocat, hubot] }
  platform: { members: [admin1, admin2, Admin3] }
  security: { members: [sec1] }
environmentTypes:
  dev: {}
";

    fn platform() -> Platform {
        parse_platform(PLATFORM_PATH, PLATFORM).expect("platform").1
    }

    fn rule(team: &str, count: u32) -> Approvals {
        Approvals {
            team: team.into(),
            count,
            on_destroy: None,
        }
    }

    const HEAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const OLD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn review(user: &str, state: ReviewState, commit: &str) -> Review {
        Review {
            id: None,
            user: user.into(),
            state,
            commit_id: Some(commit.into()),
            digest: None,
        }
    }

    use ReviewState::{Approved as A, ChangesRequested as CR, Commented as C, Dismissed as D};

    struct Case {
        name: &'static str,
        rules: Vec<Approvals>,
        reviews: Vec<Review>,
        dismiss_stale: bool,
        pass: bool,
        description: &'static str,
    }

    fn case(
        name: &'static str,
        rules: Vec<Approvals>,
        reviews: Vec<Review>,
        pass: bool,
        description: &'static str,
    ) -> Case {
        Case {
            name,
            rules,
            reviews,
            dismiss_stale: true,
            pass,
            description,
        }
    }

    #[test]
    fn approvals_table() {
        let one = || vec![rule("platform", 1)];
        let two = || vec![rule("platform", 2)];
        let either = || vec![rule("platform", 2), rule("security", 1)];
        let mut cases = vec![
            case(
                "approval by a team member passes",
                one(),
                vec![review("admin1", A, HEAD)],
                true,
                "approved by admin1",
            ),
            case(
                "no reviews",
                one(),
                vec![],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "the author does not count, even as a team member",
                one(),
                vec![review("admin2", A, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "an outsider does not count",
                one(),
                vec![review("hubot", A, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "changes requested then approved by the same reviewer passes",
                one(),
                vec![review("admin1", CR, OLD), review("admin1", A, HEAD)],
                true,
                "approved by admin1",
            ),
            case(
                "standing changes requested blocks even with enough approvals",
                one(),
                vec![
                    review("admin1", A, HEAD),
                    review("Admin3", A, HEAD),
                    review("admin1", CR, HEAD),
                ],
                false,
                "changes requested by admin1",
            ),
            case(
                "changes requested and short",
                two(),
                vec![review("admin1", CR, HEAD)],
                false,
                "changes requested by admin1; needs 2 more approvals from team platform",
            ),
            case(
                "changes requested by an outsider does not block",
                one(),
                vec![review("admin1", A, HEAD), review("hubot", CR, HEAD)],
                true,
                "approved by admin1",
            ),
            case(
                "a dismissed approval stops counting",
                one(),
                vec![review("admin1", A, HEAD), review("admin1", D, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "a dismissed change request stops blocking",
                one(),
                vec![
                    review("admin1", CR, HEAD),
                    review("admin1", D, HEAD),
                    review("Admin3", A, HEAD),
                ],
                true,
                "approved by Admin3",
            ),
            case(
                "dismissStale drops approvals of an older commit",
                one(),
                vec![review("admin1", A, OLD)],
                false,
                "needs 1 more approval from team platform; admin1 approved an older commit",
            ),
            case(
                "two of two required: one is not enough",
                two(),
                vec![review("admin1", A, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "two of two required: two pass",
                two(),
                vec![review("admin1", A, HEAD), review("Admin3", A, HEAD)],
                true,
                "approved by admin1, Admin3",
            ),
            case(
                "the same reviewer twice counts once",
                two(),
                vec![review("admin1", A, OLD), review("ADMIN1", A, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "alternatives: one from security suffices",
                either(),
                vec![review("sec1", A, HEAD)],
                true,
                "approved by sec1",
            ),
            case(
                "alternatives: short of every one",
                either(),
                vec![],
                false,
                "needs 2 more approvals from team platform, or 1 from team security",
            ),
            case(
                "alternatives: partly there",
                either(),
                vec![review("admin1", A, HEAD)],
                false,
                "needs 1 more approval from team platform, or 1 from team security",
            ),
            case(
                "logins compare case-insensitively",
                one(),
                vec![review("ADMIN1", A, HEAD)],
                true,
                "approved by ADMIN1",
            ),
            case(
                "the author in another case does not count",
                one(),
                vec![review("AdMiN2", A, HEAD)],
                false,
                "needs 1 more approval from team platform",
            ),
            case(
                "commented after approved keeps the approval",
                one(),
                vec![review("admin1", A, HEAD), review("admin1", C, HEAD)],
                true,
                "approved by admin1",
            ),
            case(
                "no rules: no approval required",
                vec![],
                vec![],
                true,
                "no approval required",
            ),
        ];
        cases.push(Case {
            dismiss_stale: false,
            ..case(
                "without dismissStale an approval of an older commit counts",
                one(),
                vec![review("admin1", A, OLD)],
                true,
                "approved by admin1",
            )
        });
        let p = platform();
        for c in cases {
            let out = evaluate_approvals(
                &c.rules,
                &c.reviews,
                "admin2",
                Some(HEAD),
                c.dismiss_stale,
                &p,
            );
            assert_eq!(out.pass, c.pass, "{}: {out:?}", c.name);
            assert_eq!(out.description, c.description, "{}", c.name);
        }
    }

    #[test]
    fn outcome_lists_approvers_and_blockers() {
        let p = platform();
        let reviews = vec![
            review("admin1", A, HEAD),
            review("sec1", CR, HEAD),
            review("hubot", A, HEAD),
        ];
        let rules = vec![rule("platform", 1), rule("security", 1)];
        let out = evaluate_approvals(&rules, &reviews, "octocat", Some(HEAD), true, &p);
        assert!(!out.pass);
        assert_eq!(out.approvers, ["admin1"]);
        assert_eq!(out.blocking, ["sec1"]);
        // An unknown head cannot make anything stale; a missing commit_id is stale.
        let old = vec![review("admin1", A, OLD)];
        assert!(evaluate_approvals(&rules[..1], &old, "x", None, true, &p).pass);
        let none = vec![Review {
            id: None,
            user: "admin1".into(),
            state: A,
            commit_id: None,
            digest: None,
        }];
        assert!(!evaluate_approvals(&rules[..1], &none, "x", Some(HEAD), true, &p).pass);
        // Commit ids compare case-insensitively.
        let upper = vec![review("admin1", A, &HEAD.to_uppercase())];
        assert!(evaluate_approvals(&rules[..1], &upper, "x", Some(HEAD), true, &p).pass);
    }

    #[test]
    fn who_may_change_an_environment() {
        let p = platform();
        let approvers = [rule("platform", 1)];
        let may =
            |login: &str, owner: Option<&str>| may_change(login, owner, "payments", &approvers, &p);
        assert!(may("stranger", Some("Stranger")), "the owner");
        assert!(may("HUBOT", Some("octocat")), "a team member");
        assert!(may("admin1", Some("octocat")), "a platform approver");
        assert!(!may("sec1", Some("octocat")), "anyone else");
        assert!(!may("sec1", None));
        assert!(may("", Some("octocat")), "no pull request");
        assert!(!may_change("admin1", None, "payments", &[], &p));
        assert!(!NoMembers.is_member("payments", "octocat"));
    }
}
