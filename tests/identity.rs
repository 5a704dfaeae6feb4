//! Identity and roles (SPEC 8) over every `/api/v1` route, against the real server, real
//! Git and the strict emulator (which answers `GET /user` for the tokens registered on it
//! and lists the members of GitHub teams).

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use common::REPO;

/// Who calls, and the token they call with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    /// A GitHub user with no role in the repository.
    Stranger,
    /// A member of `search` (through its GitHub team), not of `payments`.
    OtherTeam,
    /// A member of `payments`, the environment's team.
    Member,
    /// A member of `platform`, the governance approvers.
    Admin,
    /// Listed under `auditors`.
    Auditor,
    /// A service token from `[[api.tokens]]`.
    Service,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Stranger => Some("gho_stranger_token_1"),
            Who::OtherTeam => Some("gho_searcher_token_1"),
            Who::Member => Some("gho_octocat_token_1"),
            Who::Admin => Some("gho_admin1_token_1"),
            Who::Auditor => Some("gho_auditor1_token_1"),
            Who::Service => Some(paved_testkit::SERVICE_TOKEN),
        }
    }
}

/// What a route answers: allowed (200 with the thing), or hidden (the answer a missing
/// thing gets: 404 for one thing, an empty list for a list).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sees {
    Yes,
    No,
}

fn platform(text: String) -> String {
    let text = text.replace(
        "  platform:\n    members: [admin1, admin2]\n",
        "  platform:\n    members: [admin1, admin2]\n  search:\n    github: acme/search\n",
    );
    assert!(text.contains("acme/search"), "platform.yaml changed shape");
    text + "auditors:\n  members: [auditor1]\n"
}

async fn call(e: &Env, who: Who, path: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", e.h.url()));
    if let Some(t) = who.token() {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

async fn start() -> Env {
    let e = Env::prepare_platform(platform, |_, _| {})
        .await
        .run_with(|_| {})
        .await;
    let gh = &e.h.github;
    for (who, login) in [
        (Who::Stranger, "stranger"),
        (Who::OtherTeam, "searcher"),
        (Who::Member, "octocat"),
        (Who::Admin, "admin1"),
        (Who::Auditor, "auditor1"),
    ] {
        gh.add_user_token(who.token().expect("token"), login);
    }
    gh.set_team_members("acme/search", &["searcher"]);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_what_spec_8_says_on_every_route() {
    let e = start().await;
    // A payments environment, provisioned through a PR: a run, a merge delivery, an
    // operation and an inventory row.
    let pr = e.open(&add("orders-preview", "ok"));
    e.h.send_pr(&pr).await;
    let verdicts = e.h.verdicts(&pr.head_sha, 1).await;
    let run_url = verdicts
        .values()
        .find_map(|s| s.target_url.clone())
        .expect("a status links its run");
    let run = run_url.rsplit('/').next().expect("run id").to_string();
    let (merge, delivery) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let ops = e.operations(&merge).await;
    let op = ops[0]["id"].as_i64().expect("operation id");
    let r = REPO;
    let missing_delivery = "00000000-0000-4000-8000-000000000000";

    // (route, the same route for a thing that does not exist, is it a list, who sees it)
    let everyone_with_a_role =
        |w: Who| matches!(w, Who::Member | Who::Admin | Who::Auditor | Who::Service);
    let readers = |w: Who| matches!(w, Who::Admin | Who::Auditor | Who::Service);
    type Rule = fn(Who) -> bool;
    let routes: Vec<(String, Option<String>, Rule)> = vec![
        ("/api/v1/environments".into(), None, everyone_with_a_role),
        (
            format!("/api/v1/repos/{r}/environments"),
            None,
            everyone_with_a_role,
        ),
        (
            format!("/api/v1/repos/{r}/environments/orders-preview"),
            Some(format!("/api/v1/repos/{r}/environments/no-such-env")),
            everyone_with_a_role,
        ),
        (
            format!("/api/v1/operations/{op}"),
            Some("/api/v1/operations/987654".into()),
            everyone_with_a_role,
        ),
        (
            format!("/api/v1/repos/{r}/merges/{merge}"),
            None,
            everyone_with_a_role,
        ),
        (
            format!("/api/v1/runs/{run}"),
            Some("/api/v1/runs/987654".into()),
            everyone_with_a_role,
        ),
        (
            format!("/api/v1/deliveries/{delivery}"),
            Some(format!("/api/v1/deliveries/{missing_delivery}")),
            readers,
        ),
    ];

    let all = [
        Who::Anonymous,
        Who::Stranger,
        Who::OtherTeam,
        Who::Member,
        Who::Admin,
        Who::Auditor,
        Who::Service,
    ];
    for who in all {
        for (path, missing, rule) in &routes {
            let (status, body) = call(&e, who, path).await;
            if who == Who::Anonymous {
                assert_eq!(status, 401, "{who:?} GET {path}: {body}");
                assert!(!body.contains("orders-preview"), "{body}");
                continue;
            }
            let sees = if rule(who) { Sees::Yes } else { Sees::No };
            match (sees, missing) {
                (Sees::Yes, _) => {
                    assert_eq!(status, 200, "{who:?} GET {path}: {body}");
                    assert!(
                        body.contains("orders-preview") || path.contains("/deliveries/"),
                        "{who:?} GET {path}: the thing is missing: {body}"
                    );
                }
                (Sees::No, Some(missing)) => {
                    // The same answer as for a thing that does not exist.
                    let (m_status, m_body) = call(&e, who, missing).await;
                    assert_eq!(status, 404, "{who:?} GET {path}: {body}");
                    assert_eq!((status, &body), (m_status, &m_body), "{who:?} GET {path}");
                    assert!(!body.contains("orders-preview"), "{body}");
                }
                (Sees::No, None) => {
                    assert_eq!(status, 200, "{who:?} GET {path}: {body}");
                    assert_eq!(body.trim(), "[]", "{who:?} GET {path} leaked: {body}");
                }
            }
        }
    }

    // `/api/v1/me` names the caller and their roles.
    let me = |who: Who| {
        let e = &e;
        async move {
            let (status, body) = call(e, who, "/api/v1/me").await;
            assert_eq!(status, 200, "{who:?}: {body}");
            serde_json::from_str::<serde_json::Value>(&body).expect("json")
        }
    };
    assert_eq!(call(&e, Who::Anonymous, "/api/v1/me").await.0, 401);
    assert_eq!(
        me(Who::Stranger).await["repositories"],
        serde_json::json!({})
    );
    assert_eq!(
        me(Who::OtherTeam).await["repositories"][r],
        serde_json::json!(["member:search"])
    );
    assert_eq!(
        me(Who::Member).await["repositories"][r],
        serde_json::json!(["member:payments"])
    );
    assert_eq!(
        me(Who::Admin).await["repositories"][r],
        serde_json::json!(["admin", "member:platform"])
    );
    assert_eq!(
        me(Who::Auditor).await["repositories"][r],
        serde_json::json!(["auditor"])
    );
    let service = me(Who::Service).await;
    assert_eq!(service["kind"], "service");
    assert_eq!(service["repositories"][r], serde_json::json!(["reader"]));
    assert_eq!(me(Who::Member).await["login"], "octocat");

    // The catalog and the Graph need an identity too.
    for path in [
        "/api/v1/templates",
        "/api/v1/entities",
        "/api/v1/graph",
        "/api/v1/entities/team:acme/environments/payments",
    ] {
        assert_eq!(call(&e, Who::Anonymous, path).await.0, 401, "{path}");
    }

    // Open routes stay open; the schemas need an identity like everything else.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        assert_eq!(call(&e, Who::Anonymous, path).await.0, 200, "{path}");
    }
    assert_eq!(
        call(&e, Who::Anonymous, "/schemas/environment.json")
            .await
            .0,
        401
    );
    assert_eq!(
        call(&e, Who::Stranger, "/schemas/environment.json").await.0,
        200
    );

    // Asking for a reconcile: who may act gets 202; who may not see the environment gets
    // what a missing one gets; who has no team, or only reads, gets 403 either way.
    let reconcile = |name: &str| format!("/api/v1/repos/{r}/environments/{name}/reconcile");
    for (who, expected) in [
        (Who::Anonymous, 401),
        (Who::Stranger, 403),
        (Who::OtherTeam, 404),
        (Who::Member, 202),
        (Who::Admin, 202),
        (Who::Auditor, 403),
        (Who::Service, 403),
    ] {
        let (status, body) = post(&e, who, &reconcile("orders-preview")).await;
        assert_eq!(status, expected, "{who:?} POST reconcile: {body}");
        let (m_status, m_body) = post(&e, who, &reconcile("no-such-env")).await;
        if matches!(expected, 401 | 403 | 404) && who != Who::Auditor {
            assert_eq!(
                (status, &body),
                (m_status, &m_body),
                "{who:?}: hidden as missing"
            );
        }
        assert!(
            expected == 202 || !body.contains("orders-preview"),
            "{who:?}: {body}"
        );
    }
}

async fn post(e: &Env, who: Who, path: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", e.h.url()));
    if let Some(t) = who.token() {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_github_no_longer_accepts_stops_working_within_the_cache_time() {
    let mut e = Env::prepare_platform(platform, |_, _| {})
        .await
        .run_with(|c| c.api.identity_ttl = std::time::Duration::from_secs(1))
        .await;
    e.h.allow_unknown_tokens();
    e.h.github.add_user_token("gho_revoked_soon", "octocat");
    let me = |token: &'static str| {
        let e = &e;
        async move {
            reqwest::Client::new()
                .get(format!("{}/api/v1/me", e.h.url()))
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(me("gho_revoked_soon").await, 200);
    assert_eq!(me("gho_never_issued").await, 401);
    let asked = e.h.github.requests().len();
    assert_eq!(me("gho_revoked_soon").await, 200);
    assert_eq!(
        e.h.github
            .requests()
            .iter()
            .skip(asked)
            .filter(|r| r.path == "/user")
            .count(),
        0,
        "the login is cached, GitHub is not asked again at once"
    );

    e.h.github.revoke_user_token("gho_revoked_soon");
    common::eventually("a revoked token refused after the cache time", async || {
        let status = me("gho_revoked_soon").await;
        if status != 401 {
            assert_eq!(status, 200);
        }
        (status == 401).then_some(())
    })
    .await;
    // Nothing of the token itself reaches the 401's body.
    let body = reqwest::Client::new()
        .get(format!("{}/api/v1/environments", e.h.url()))
        .bearer_auth("gho_revoked_soon")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(!body.contains("gho_revoked_soon"), "{body}");
    assert!(body.contains("token"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_github_team_count_for_the_checks() {
    // `platform` (the governance approvers) is also the GitHub team acme/platform-admins.
    let e = Env::prepare_platform(
        |text| {
            let text = text.replace(
                "  platform:\n    members: [admin1, admin2]\n",
                "  platform:\n    members: [admin1, admin2]\n    github: acme/platform-admins\n",
            );
            assert!(text.contains("acme/platform-admins"));
            text
        },
        |_, _| {},
    )
    .await
    .run_with(|_| {})
    .await;
    e.h.github
        .set_team_members("acme/platform-admins", &["ghadmin"]);

    let verdict_with_approver = |approver: &'static str| {
        let e = &e;
        async move {
            // A file of its own per PR, so each PR has its own head commit.
            let pr = e.open(&[(
                format!("catalog/NOTES-{approver}.md"),
                Some(b"notes\n".to_vec()),
            )]);
            e.h.github.set_pull_reviews(
                &e.repo(),
                pr.number,
                vec![
                    serde_json::json!({"user": {"login": approver}, "state": "APPROVED",
                                        "commit_id": pr.head_sha.as_str()}),
                ],
            );
            e.h.send_pr(&pr).await;
            e.h.verdicts(&pr.head_sha, 1).await["paved/governance"].clone()
        }
    };
    // Listed only by GitHub: the approval counts.
    let approved = verdict_with_approver("ghadmin").await;
    assert_eq!(approved.state, "success", "{approved:?}");
    assert!(
        approved
            .description
            .as_deref()
            .unwrap_or("")
            .contains("ghadmin"),
        "{approved:?}"
    );
    // Nobody's member: it does not.
    let refused = verdict_with_approver("passerby").await;
    assert_eq!(refused.state, "failure", "{refused:?}");
    assert!(e.h.github.requests().iter().any(|r| r
        .path
        .starts_with("/orgs/acme/teams/platform-admins/members")));
}

async fn get_json(e: &Env, who: Who, path: &str) -> (u16, serde_json::Value, Option<String>) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", e.h.url()));
    if let Some(t) = who.token() {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let link = r
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, link)
}

fn targets(rels: &serde_json::Value, kind: &str, field: &str) -> Vec<String> {
    let mut out: Vec<String> = rels
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == kind)
        .filter_map(|r| r[field].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_the_graph_say_what_the_audit_trail_says_to_those_who_may_see_it() {
    let e = start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let r = REPO;

    // Templates: each catalog definition with its parameters as a JSON Schema and the
    // environment types that allow it.
    let (status, templates, _) = get_json(&e, Who::Member, "/api/v1/templates").await;
    assert_eq!(status, 200, "{templates}");
    let recorder = templates
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["name"] == "recorder")
        .expect("recorder template")
        .clone();
    assert_eq!(recorder["id"], format!("template:{r}/recorder"));
    let params = &recorder["parameters"];
    assert_eq!(params["type"], "object");
    assert_eq!(params["properties"]["mode"]["default"], "ok");
    assert_eq!(params["properties"]["mode"]["enum"][1], "fail");
    assert_eq!(params["properties"]["note"]["type"], "string");
    let mut types: Vec<&str> = recorder["environmentTypes"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["dev", "quick"]);
    assert_eq!(
        get_json(&e, Who::Stranger, "/api/v1/templates").await.1,
        serde_json::json!([])
    );

    // The environment entity, its relations agreeing with the audit note.
    let env_id = format!("environment:{r}/orders-preview");
    let (status, one, _) = get_json(&e, Who::Member, &format!("/api/v1/entities/{env_id}")).await;
    assert_eq!(status, 200, "{one}");
    let ent = &one["entity"];
    assert_eq!(ent["kind"], "environment");
    assert_eq!(ent["team"], "payments");
    assert_eq!(ent["state"], "ready");
    assert_eq!(ent["links"]["url"], "https://orders-preview.example.test");
    assert!(ent["links"]["pullRequest"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!("/pull/{}", pr.number))));
    assert!(ent["links"]["mergeCommit"]
        .as_str()
        .is_some_and(|u| u.ends_with(merge.as_str())));
    let rels = &ent["relations"];
    assert_eq!(
        targets(rels, "ownedBy", "target"),
        [format!("team:{r}/payments")]
    );
    assert_eq!(
        targets(rels, "instanceOf", "target"),
        [format!("template:{r}/recorder")]
    );
    assert_eq!(
        targets(rels, "ofType", "target"),
        [format!("environmentType:{r}/dev")]
    );
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1);
    let note = &notes[0];
    let users = |logins: Vec<String>| {
        let mut v: Vec<String> = logins.iter().map(|l| format!("user:{r}/{l}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        targets(rels, "approvedBy", "target"),
        users(note.approvers.clone())
    );
    assert_eq!(
        targets(rels, "deployedBy", "target"),
        users(note.merger.clone().into_iter().collect())
    );
    assert_eq!(
        targets(rels, "requestedBy", "target"),
        users(note.requester.clone().into_iter().collect())
    );
    // Both ways: the operation points at the environment.
    let incoming = targets(&one["incoming"], "definedIn", "target");
    assert_eq!(incoming.len(), 1, "{one}");
    assert!(incoming[0].starts_with(&format!("operation:{r}/")));
    // The team, seen from the other side: its environment and its members.
    let (_, team, _) = get_json(
        &e,
        Who::Member,
        &format!("/api/v1/entities/team:{r}/payments"),
    )
    .await;
    let owned = targets(&team["incoming"], "ownedBy", "target");
    assert_eq!(owned.len(), 2, "{owned:?}");
    assert!(owned.contains(&env_id), "{owned:?}");
    assert!(owned
        .iter()
        .any(|o| o.starts_with(&format!("operation:{r}/"))));
    assert!(targets(&team["incoming"], "memberOf", "target").contains(&format!("user:{r}/octocat")));

    // Another team's member, and a stranger: the environment is as missing as a missing one.
    let missing = format!("/api/v1/entities/environment:{r}/no-such-env");
    for who in [Who::OtherTeam, Who::Stranger] {
        let seen = get_json(&e, who, &format!("/api/v1/entities/{env_id}")).await;
        let absent = get_json(&e, who, &missing).await;
        assert_eq!((seen.0, &seen.1), (404, &absent.1), "{who:?}");
        let (_, list, _) = get_json(&e, who, "/api/v1/entities?kind=environment").await;
        assert_eq!(list, serde_json::json!([]), "{who:?}");
    }
    // The other team sees its own team in the graph, GitHub members included.
    let (_, search, _) = get_json(
        &e,
        Who::OtherTeam,
        &format!("/api/v1/entities/team:{r}/search"),
    )
    .await;
    assert_eq!(
        targets(&search["incoming"], "memberOf", "target"),
        [format!("user:{r}/searcher")]
    );

    // Filters and pages, with GitHub's Link header.
    let (_, envs, _) = get_json(
        &e,
        Who::Auditor,
        "/api/v1/entities?kind=environment&team=payments&q=ORDERS",
    )
    .await;
    assert_eq!(envs.as_array().map(Vec::len), Some(1), "{envs}");
    let (_, all_users, _) =
        get_json(&e, Who::Admin, "/api/v1/entities?kind=user&per_page=100").await;
    let all_users: Vec<String> = all_users
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_string))
        .collect();
    assert!(all_users.len() > 3, "{all_users:?}");
    let mut paged = Vec::new();
    let mut next = Some(format!(
        "{}/api/v1/entities?kind=user&per_page=2",
        e.h.url()
    ));
    while let Some(url) = next.take() {
        let path = url
            .strip_prefix(&e.h.url())
            .or_else(|| url.strip_prefix("http://paved.test"))
            .expect("a link to Paved")
            .to_string();
        let (status, page, link) = get_json(&e, Who::Admin, &path).await;
        assert_eq!(status, 200);
        assert!(page.as_array().is_some_and(|p| p.len() <= 2));
        paged.extend(
            page.as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u["id"].as_str().map(str::to_string)),
        );
        next = link.and_then(|l| {
            l.split(", ")
                .find(|p| p.ends_with("rel=\"next\""))
                .and_then(|p| p.split(['<', '>']).nth(1).map(str::to_string))
        });
    }
    assert_eq!(paged, all_users);
    assert_eq!(
        get_json(&e, Who::Admin, "/api/v1/entities?kind=planet")
            .await
            .0,
        400
    );

    // The whole graph: nodes and typed edges.
    let (_, g, _) = get_json(&e, Who::Member, "/api/v1/graph").await;
    let edges = g["edges"].as_array().expect("edges");
    assert!(edges.iter().any(|x| x["source"] == env_id.as_str()
        && x["type"] == "ownedBy"
        && x["target"] == format!("team:{r}/payments")));
    let (_, g, _) = get_json(&e, Who::OtherTeam, "/api/v1/graph").await;
    assert!(
        !g.to_string().contains("orders-preview"),
        "another team's graph shows the environment: {g}"
    );
}

/// Follows `rel="next"` from `path`; every entity id, in order.
async fn walk(e: &Env, who: Who, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(path) = next.take() {
        let (status, page, link) = get_json(e, who, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        ids.extend(
            page.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["id"].as_str().map(str::to_string)),
        );
        next = link.and_then(|l| {
            l.split(", ")
                .find(|p| p.ends_with("rel=\"next\""))
                .and_then(|p| p.split(['<', '>']).nth(1))
                .and_then(|u| u.strip_prefix("http://paved.test"))
                .map(str::to_string)
        });
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_environments_are_the_graphs_environments_in_order() {
    let e = start().await;
    let store = &e.h.service.as_ref().expect("running").store;
    let teams = [("payments", 7), ("search", 3)];
    for (team, n) in teams {
        for i in 0..n {
            let mut u = paved::store::EnvironmentUpdate {
                repo: REPO.parse().expect("repo"),
                name: format!("{}-{i:02}", &team[..1]).parse().expect("name"),
                team: team.parse().expect("team"),
                owner: "octocat".parse().expect("login"),
                env_type: "dev".into(),
                definition: "static-site".into(),
                state: paved::store::EnvState::Ready,
                parameters: None,
                outputs: None,
                last_operation: None,
                new_generation: false,
            };
            if i == 0 {
                u.name = format!("zz-{team}").parse().expect("name");
            }
            store.upsert_environment(u).await.expect("inventory row");
        }
    }
    // Page by page (chosen in the database) and from the whole graph: the same entities in
    // the same order, for each role.
    for (who, sees) in [(Who::Member, 7), (Who::OtherTeam, 3), (Who::Admin, 10)] {
        let paged = walk(&e, who, "/api/v1/entities?kind=environment&per_page=2").await;
        let all = walk(&e, who, "/api/v1/entities?per_page=100").await;
        let from_graph: Vec<String> = all
            .into_iter()
            .filter(|id| id.starts_with("environment:"))
            .collect();
        assert_eq!(paged.len(), sees, "{who:?}: {paged:?}");
        assert_eq!(paged, from_graph, "{who:?}");
    }
    // Filters narrow the same way.
    let q = walk(
        &e,
        Who::Admin,
        "/api/v1/entities?kind=environment&q=ZZ-&per_page=1",
    )
    .await;
    assert_eq!(
        q,
        [
            format!("environment:{REPO}/zz-payments"),
            format!("environment:{REPO}/zz-search")
        ]
    );
    let t = walk(
        &e,
        Who::Member,
        "/api/v1/entities?kind=environment&team=search",
    )
    .await;
    assert!(t.is_empty(), "another team's: {t:?}");
    let t = walk(
        &e,
        Who::Admin,
        "/api/v1/entities?kind=environment&team=search",
    )
    .await;
    assert_eq!(t.len(), 3);
    // A page past the last is empty, and links back.
    let (status, page, link) =
        get_json(&e, Who::Admin, "/api/v1/entities?kind=environment&page=9").await;
    assert_eq!((status, page), (200, serde_json::json!([])));
    assert!(link.is_some_and(|l| l.contains("rel=\"prev\"")));
}

/// Runs the `paved` binary with `args`, `PAVED_SERVER` pointing at the test server and
/// `PAVED_TOKEN` set when `who` has a token; returns (exit code, stdout, stderr).
fn paved_cli(e: &Env, who: Who, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paved"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_SERVER", e.h.url());
    if let Some(t) = who.token() {
        cmd.env("PAVED_TOKEN", t);
    }
    let out = cmd.output().expect("run paved");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_shows_what_the_api_lets_its_user_see() {
    let mut e = start().await;
    e.h.allow_unknown_tokens();
    let pr = e.open(&add("orders-preview", "ok"));
    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");

    // `paved env list`: a table for people, JSON for scripts.
    let (code, out, err) =
        tokio::task::block_in_place(|| paved_cli(&e, Who::Member, &["env", "list"]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[1].starts_with("orders-preview")
            && lines[1].contains("payments")
            && lines[1].contains("ready"),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| {
        paved_cli(&e, Who::Member, &["env", "list", "--format", "json"])
    });
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["name"], "orders-preview");

    // `paved env show`: outputs and operations.
    let (code, out, err) = tokio::task::block_in_place(|| {
        paved_cli(&e, Who::Member, &["env", "show", "orders-preview"])
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("url = https://orders-preview.example.test"),
        "{out}"
    );
    assert!(out.contains("deploy") && out.contains("succeeded"), "{out}");

    // `paved templates`.
    let (code, out, err) =
        tokio::task::block_in_place(|| paved_cli(&e, Who::Member, &["templates"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("recorder")
            && l.contains("dev,quick")
            && l.contains("mode,note")),
        "{out}"
    );

    // Another team sees none of it; without a token the error says what to do.
    let (code, out, _) =
        tokio::task::block_in_place(|| paved_cli(&e, Who::OtherTeam, &["env", "list"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("no environments you may see"), "{out}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        paved_cli(&e, Who::OtherTeam, &["env", "show", "orders-preview"])
    });
    assert_eq!(code, 2);
    assert!(err.contains("no environment \"orders-preview\""), "{err}");
    let (code, _, err) =
        tokio::task::block_in_place(|| paved_cli(&e, Who::Anonymous, &["env", "list"]));
    assert_eq!(code, 2);
    assert!(err.contains("set PAVED_TOKEN"), "{err}");
    e.h.github.add_user_token("gho_soon_gone", "octocat");
    e.h.github.revoke_user_token("gho_soon_gone");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paved"));
    let out = tokio::task::block_in_place(|| {
        cmd.args(["env", "list"])
            .env_clear()
            .env("PAVED_SERVER", e.h.url())
            .env("PAVED_TOKEN", "gho_soon_gone")
            .output()
            .expect("run")
    });
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not accept your token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Made-up bearer tokens cost GitHub a bounded number of `GET /user` calls (issue 19,
/// item 7): a refused token is remembered, and a client that keeps sending unknown ones is
/// answered 429 (JSON, `Retry-After`) without GitHub being asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_tokens_cost_github_a_bounded_number_of_lookups() {
    let mut e = start().await;
    e.h.allow_unknown_tokens();
    let user_lookups = || {
        e.h.github
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/user")
            .count()
    };
    let ask = |token: String| {
        let url = format!("{}/api/v1/environments", e.h.url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
        }
    };
    let before = user_lookups();
    // The same unknown token, again and again: GitHub is asked once.
    for _ in 0..5 {
        assert_eq!(ask("gho_made_up_again".into()).await.status(), 401);
    }
    assert_eq!(user_lookups() - before, 1, "a refusal is remembered");

    // 25 made-up tokens from one client.
    let mut answers = Vec::new();
    for i in 0..25 {
        let r = ask(format!("gho_made_up_{i}")).await;
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: serde_json::Value = r.json().await.expect("a JSON body");
        answers.push((status, retry, body));
    }
    let lookups = user_lookups() - before;
    assert_eq!(
        lookups,
        paved::identity::MAX_STRIKES as usize,
        "GitHub was asked {lookups} times"
    );
    let refused = answers.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!(refused, paved::identity::MAX_STRIKES as usize - 1);
    for (status, retry, body) in &answers[refused..] {
        assert_eq!(*status, 429);
        let secs: u64 = retry
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|m| m.contains("too many")),
            "{body}"
        );
    }
    // A service token needs no lookup: it still works from that client.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/environments", e.h.url()))
        .bearer_auth(paved_testkit::SERVICE_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

/// Issue 19, item 8: the Graph and the Backstage export show a caller only the users tied
/// to what they may see: someone named only by another team's environment stays unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_shows_only_users_tied_to_what_the_caller_sees() {
    let e = start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    e.h.send_pr(&pr).await;
    // Merged by a maintainer who is in no team: named only by this payments environment.
    let merge = e.merge_on_github(&pr);
    let body = paved_testkit::merged_payload(&pr, &merge, "outside-maintainer").expect("payload");
    let id = e.h.delivery_id();
    assert!(e.h.send("pull_request", &id, &body).await.is_success());
    assert_eq!(e.provision_status(&merge).await.state, "success");

    let users = |who: Who| {
        let e = &e;
        async move {
            let (status, v, _) = get_json(e, who, "/api/v1/entities?kind=user&per_page=100").await;
            assert_eq!(status, 200, "{v}");
            v.as_array()
                .expect("list")
                .iter()
                .filter_map(|u| u["name"].as_str().map(str::to_string))
                .collect::<Vec<String>>()
        }
    };
    let member = users(Who::Member).await;
    assert!(
        member.contains(&"outside-maintainer".to_string()),
        "{member:?}"
    );
    let other = users(Who::OtherTeam).await;
    assert!(
        !other.contains(&"outside-maintainer".to_string()),
        "{other:?}"
    );
    assert!(
        other.contains(&"searcher".to_string()),
        "team members stay: {other:?}"
    );

    let (status, yaml) = call(&e, Who::OtherTeam, "/api/v1/backstage/entities.yaml").await;
    assert_eq!(status, 200);
    assert!(!yaml.contains("outside-maintainer"), "{yaml}");
    let (_, yaml) = call(&e, Who::Member, "/api/v1/backstage/entities.yaml").await;
    assert!(yaml.contains("outside-maintainer"), "{yaml}");
}
