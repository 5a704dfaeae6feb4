//! A strict, stateful fake of GitHub's REST API, served on loopback.
//!
//! Integration tests and `paved demo` point Paved's GitHub client at [`EmulatorHandle::url`]
//! (it plays the role of `https://api.github.com`: paths are `/repos/...` directly under it).
//!
//! **What it serves.** The operations of `tests/fixtures/github/openapi-subset.json`
//! (embedded at compile time) that Paved calls: commit statuses and the combined status,
//! check runs, issue comments, deployments and deployment statuses, pulls (with files and
//! reviews), contents, repositories, installation access tokens, the authenticated user
//! (`GET /user`, for user tokens registered with [`EmulatorHandle::add_user_token`]) and
//! team members ([`EmulatorHandle::set_team_members`]). An operation of the subset it does
//! not implement answers 501 and is recorded as rejected, so a test notices.
//!
//! **Strictness.** A request is answered like GitHub would answer a bad request, nothing in
//! the state changes, and the request is recorded as [`Outcome::Rejected`] with the reason:
//! - no operation of the subset matches method + path → 404 `Not Found`;
//! - no `User-Agent` header → 403 (as GitHub does);
//! - no `Authorization` header → 401 `Requires authentication`; a header that is not
//!   `token X` / `Bearer X` → 401 `Bad credentials`; the installation-token endpoint needs a
//!   `Bearer` JWT whose claims GitHub would accept (`iat`, `exp` at most 10 minutes ahead
//!   and not past, `iss`); with [`EmulatorConfig::require_issued_token`], other endpoints need an
//!   unexpired token the emulator issued (or one of [`EmulatorConfig::static_tokens`]);
//! - a path or query parameter that does not validate against its schema (integers must
//!   parse as integers), a repeated query parameter, and (in the default pedantic mode, see
//!   [`EmulatorConfig::deny_unlisted_properties`]) a query parameter the operation does not have
//!   → 400;
//! - a required body that is missing, a body that is not JSON (`Problems parsing JSON`), or
//!   one that does not validate against the operation's request schema → 400 (GitHub itself
//!   answers 422 for most schema failures; this emulator answers 400 as Paved's tests expect);
//! - an `Accept` media type the emulator does not implement for the operation → 415;
//! - GitHub's own semantic validations, answered with GitHub's 422 `Validation Failed` body:
//!   a status or deployment-status `description` over 140 characters, a comment body over
//!   65536 characters, a status/check-run `sha` that is not a full commit SHA, more than
//!   1000 statuses for one SHA and context, a check run `completed` without a `conclusion`,
//!   a deployment `ref` that is neither a SHA nor a ref registered with
//!   [`EmulatorHandle::set_ref`].
//!
//! Valid requests for things that do not exist (an unknown comment id, a pull request the
//! test did not set) get 404 [`Outcome::NotFound`]; a deployment whose required contexts are
//! not all `success` gets GitHub's 409 [`Outcome::Conflict`].
//!
//! **Responses** are built from the schema's own examples, with ids, states, bodies, URLs
//! (under the emulator's base URL) and timestamps overwritten, and every JSON 2xx body is
//! validated against the operation's response schema before it is sent; violations are
//! recorded in [`RequestRecord::response_schema_errors`] (and the integration tests assert
//! there are none).
//!
//! **Git** ([`EmulatorConfig::git_root`]): the repositories under that folder are served
//! over smart HTTP at `/git/<owner>/<repo>.git`, to Basic credentials whose password is an
//! installation token the emulator issued, as GitHub serves them to apps.
//!
//! **OAuth web flow** (the `oauth` module): `/login/oauth/authorize` and
//! `/login/oauth/access_token`, for apps registered with
//! [`EmulatorHandle::register_oauth_app`] and the user set with
//! [`EmulatorHandle::sign_in_as`]; the token it gives is known to `GET /user`.
//!
//! **App manifest flow** (the `apps` module): a manifest posted to `/settings/apps/new` (or
//! an organization's) comes back as a one-time code at its `redirect_url`, and
//! `POST /app-manifests/{code}/conversions` turns it into an App
//! ([`EmulatorHandle::created_apps`]) with the key of [`EmulatorConfig::manifest_app_key`],
//! whose JWTs the installation-token endpoint then verifies.
//!
//! **Faults** ([`EmulatorHandle::fail_next`], [`EmulatorHandle::inject`]) answer the next
//! requests with an error status without touching the state, for retry tests.
//!
//! **Starting**: [`Emulator::start`] (or the free [`start`]) with the defaults,
//! [`Emulator::start_with`] with an [`EmulatorConfig`]; the [`EmulatorHandle`] is cheap to
//! clone and the server stops when the last clone is dropped.
//!
//! **Inspection**: statuses, comments, deployments, check runs, tokens and every request
//! are readable from the handle, and [`EmulatorHandle::wait_until`] waits for a condition
//! without polling (it wakes on every state change).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

mod apps;
mod contents;
mod git;
mod handle;
mod helpers;
mod issues;
mod json;
mod oauth;
mod people;
mod pulls;
mod records;
mod routes;
pub mod schema;
mod server;
mod subset;
mod world;

#[allow(unused_imports)]
pub use apps::CreatedApp;
pub use git::{GitRequest, GIT_PREFIX};
pub use handle::*;
#[allow(unused_imports)]
pub use helpers::*;
#[allow(unused_imports)]
pub use json::*;
#[allow(unused_imports)]
pub use records::*;
#[allow(unused_imports)]
pub use routes::*;
#[allow(unused_imports)]
pub use server::*;
#[allow(unused_imports)]
pub use subset::*;
#[allow(unused_imports)]
pub use world::*;

const SUBSET_JSON: &str = include_str!("../../../tests/fixtures/github/openapi-subset.json");
const DOCS_ROOT: &str = "https://docs.github.com/rest";
const SECONDARY_RATE_LIMIT_DOCS: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const MAX_STATUS_DESCRIPTION: usize = 140;
const MAX_COMMENT_BODY: usize = 65536;
const MAX_STATUSES_PER_CONTEXT: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_parses_with_its_operations() {
        // GitHub's 28 extracted operations and its manifest conversion, plus
        // `repos/list-deployments` and `issues/update` added here (marked `x-made-here`).
        let ops = operations().expect("subset");
        assert_eq!(ops.len(), 31);
    }

    fn route(method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let ops = operations().expect("subset");
        match_route(ops, method, path).map(|(op, p)| (op.operation_id.clone(), p))
    }

    #[test]
    fn routing_distinguishes_similar_paths() {
        let (id, p) = route("PATCH", "/repos/o/r/issues/comments/5").expect("route");
        assert_eq!(id, "issues/update-comment");
        assert_eq!(p[2], ("comment_id".to_string(), "5".to_string()));
        let (id, p) = route("GET", "/repos/o/r/issues/7/comments").expect("route");
        assert_eq!(id, "issues/list-comments");
        assert_eq!(p[2], ("issue_number".to_string(), "7".to_string()));
        let (id, _) = route("POST", "/repos/o/r/issues/7/comments").expect("route");
        assert_eq!(id, "issues/create-comment");
        assert!(route("GET", "/repos/o/r/issues/comments/5").is_none());
        assert!(route("DELETE", "/repos/o/r").is_none());
        let (id, p) = route("GET", "/repos/o/r/contents/environments/a/b.yaml").expect("route");
        assert_eq!(id, "repos/get-content");
        assert_eq!(p[2].1, "environments/a/b.yaml");
        let (id, p) = route("GET", "/repos/o/r/commits/heads/main/status").expect("route");
        assert_eq!(id, "repos/get-combined-status-for-ref");
        assert_eq!(p[2].1, "heads/main");
        let (id, _) = route("GET", "/repos/o/r/pulls/3").expect("route");
        assert_eq!(id, "pulls/get");
        let (id, _) = route("GET", "/repos/o/r/pulls/3/files").expect("route");
        assert_eq!(id, "pulls/list-files");
        let (id, _) = route("GET", "/repos/o/r").expect("route");
        assert_eq!(id, "repos/get");
        assert!(route("GET", "/repos/o/r/").is_none());
        let (_, p) = route("GET", "/repos/o%2Dx/r").expect("route");
        assert_eq!(p[0].1, "o-x");
    }

    #[test]
    fn combined_state_follows_github() {
        let s = |state: &str| Status {
            id: 1,
            sha: String::new(),
            state: state.to_string(),
            context: "c".to_string(),
            description: None,
            target_url: None,
            creator: String::new(),
            created_at: Utc::now(),
        };
        assert_eq!(combined_state([]), "pending");
        assert_eq!(combined_state([&s("success"), &s("pending")]), "pending");
        assert_eq!(combined_state([&s("success"), &s("error")]), "failure");
        assert_eq!(combined_state([&s("pending"), &s("failure")]), "failure");
        assert_eq!(combined_state([&s("success")]), "success");
    }

    #[test]
    fn latest_status_per_context_is_case_insensitive() {
        let mk = |id: u64, ctx: &str, state: &str| Status {
            id,
            sha: String::new(),
            state: state.to_string(),
            context: ctx.to_string(),
            description: None,
            target_url: None,
            creator: String::new(),
            created_at: Utc::now(),
        };
        let latest = latest_by_context(&[
            mk(1, "paved/schema", "pending"),
            mk(2, "paved/policy", "failure"),
            mk(3, "Paved/Schema", "success"),
        ]);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest["Paved/Schema"].id, 3);
    }

    #[test]
    fn base64_round_trip() {
        for input in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let enc = base64_encode(input.as_bytes());
            assert_eq!(base64url_decode(&enc).as_deref(), Some(input.as_bytes()));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn app_jwt_claims_are_checked() {
        let now = 1_700_000_000;
        let jwt = |claims: Value| {
            format!(
                "e30.{}.c2ln",
                base64_encode(claims.to_string().as_bytes())
                    .trim_end_matches('=')
                    .replace('+', "-")
                    .replace('/', "_")
            )
        };
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 60, "exp": now + 540, "iss": 1})),
            now
        )
        .is_ok());
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 60, "exp": now + 3600, "iss": 1})),
            now
        )
        .is_err());
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 600, "exp": now - 1, "iss": 1})),
            now
        )
        .is_err());
        assert!(check_app_jwt(&jwt(json!({"iat": now, "exp": now + 60})), now).is_err());
        assert!(check_app_jwt("ghs_notajwt", now).is_err());
    }

    #[test]
    fn refs_normalise() {
        assert_eq!(normalize_ref("refs/heads/main"), "main");
        assert_eq!(normalize_ref("heads/main"), "main");
        assert_eq!(normalize_ref("main"), "main");
        assert_eq!(normalize_ref("refs/tags/v1"), "v1");
        assert_eq!(normalize_ref("tags/v1"), "v1");
        assert_eq!(normalize_ref("feature/x"), "feature/x");
    }
}
