//! The writes the orchestrator and the lifecycle may make, answered with state over real
//! HTTP: pull requests listed and updated, issues and labels, a collaborator's permission,
//! branches read and made, files written and deleted. Every 2xx answer validates against
//! GitHub's published response schema, and every refusal is GitHub's.

use std::collections::BTreeSet;

use github_emulator::{self as emulator, schema, EmulatorHandle};
use serde_json::{json, Value};

const REPO: &str = "octo-org/environments";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA2: &str = "e5bd3914e2e596debea16f433f57875b5b90bcd6";

/// What this file answers 2xx (`tests/emulator/` leaves exactly these to it).
const ANSWERED_HERE: &[&str] = &[
    "pulls/list",
    "pulls/update",
    "issues/create",
    "issues/add-labels",
    "issues/update",
    "repos/get-collaborator-permission-level",
    "git/create-ref",
    "git/get-ref",
    "repos/create-or-update-file-contents",
    "repos/delete-file",
];

/// What each test answers 2xx (it checks it answered exactly these).
const PULLS_ISSUES_PEOPLE: &[&str] = &[
    "pulls/create",
    "pulls/list",
    "pulls/update",
    "issues/create",
    "issues/add-labels",
    "issues/update",
    "repos/get-collaborator-permission-level",
];
const BRANCHES_FILES: &[&str] = &[
    "git/create-ref",
    "git/get-ref",
    "repos/create-or-update-file-contents",
    "repos/delete-file",
];

fn exactly(checked: &BTreeSet<String>, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(ToString::to_string).collect();
    assert_eq!(checked, &expected, "the operations answered 2xx");
}

struct Reply {
    status: u16,
    link: Option<String>,
    body: Value,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    checked: BTreeSet<String>,
}

impl Client {
    fn new(emu: &EmulatorHandle) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: emu.url(),
            token: "token ghs_testtoken".into(),
            checked: BTreeSet::new(),
        }
    }

    /// Calls `method path`; a 2xx answer must validate against `op`'s response schema.
    async fn call(&mut self, op: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", "paved-tests")
            .header("authorization", &self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("the emulator answers");
        let status = r.status().as_u16();
        let link = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            let schema = emulator::response_schema(op, status, "application/json")
                .unwrap_or_else(|| panic!("no schema for {op} {status}"));
            if let Err(errors) = schema::validate(schema, &body) {
                panic!("{op} {status} does not match its schema: {errors:#?}");
            }
            self.checked.insert(op.to_string());
        }
        Reply { status, link, body }
    }
}

fn numbers(r: &Reply) -> Vec<u64> {
    r.body
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["number"].as_u64())
        .collect()
}

#[tokio::test]
async fn pull_requests_are_listed_filtered_and_updated() {
    let emu = emulator::start().await.expect("emulator starts");
    let mut c = Client::new(&emu);
    emu.set_ref(REPO, "main", SHA);
    emu.set_ref(REPO, "feature-a", SHA2);
    emu.set_ref(REPO, "feature-b", SHA2);
    emu.set_ref(REPO, "release", SHA);
    let pulls = format!("/repos/{REPO}/pulls");
    for head in ["feature-a", "feature-b"] {
        let r = c
            .call(
                "pulls/create",
                "POST",
                &pulls,
                Some(json!({"title": head, "head": head, "base": "main"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Newest first by default; `head` is `owner:branch`.
    let r = c.call("pulls/list", "GET", &pulls, None).await;
    assert_eq!(numbers(&r), [2, 1]);
    let r = c
        .call("pulls/list", "GET", &format!("{pulls}?direction=asc"), None)
        .await;
    assert_eq!(numbers(&r), [1, 2]);
    let r = c
        .call(
            "pulls/list",
            "GET",
            &format!("{pulls}?head=octo-org:feature-a"),
            None,
        )
        .await;
    assert_eq!(numbers(&r), [1]);

    // Closing one moves it from `open` to `closed`; a new title and base stick.
    let r = c
        .call(
            "pulls/update",
            "PATCH",
            &format!("{pulls}/1"),
            Some(json!({"state": "closed", "title": "Not now", "base": "release"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "closed");
    assert!(r.body["closed_at"].is_string());
    assert_eq!(r.body["base"]["ref"], "release");
    let r = c.call("pulls/list", "GET", &pulls, None).await;
    assert_eq!(numbers(&r), [2]);
    let r = c
        .call("pulls/list", "GET", &format!("{pulls}?state=closed"), None)
        .await;
    assert_eq!(numbers(&r), [1]);
    assert_eq!(r.body[0]["title"], "Not now");
    let r = c
        .call(
            "pulls/list",
            "GET",
            &format!("{pulls}?state=all&base=main"),
            None,
        )
        .await;
    assert_eq!(numbers(&r), [2]);
    let r = c
        .call(
            "pulls/list",
            "GET",
            &format!("{pulls}?state=all&per_page=1"),
            None,
        )
        .await;
    assert_eq!(numbers(&r), [2]);
    assert!(r.link.is_some_and(|l| l.contains("rel=\"next\"")));

    // A base that does not exist, a merged pull request reopened, an unknown one.
    let r = c
        .call(
            "pulls/update",
            "PATCH",
            &format!("{pulls}/2"),
            Some(json!({"base": "nope"})),
        )
        .await;
    assert_eq!(r.status, 422);
    emu.set_pull(REPO, 7, json!({"state": "closed", "merged": true}));
    let r = c
        .call(
            "pulls/update",
            "PATCH",
            &format!("{pulls}/7"),
            Some(json!({"state": "open"})),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .call(
            "pulls/update",
            "PATCH",
            &format!("{pulls}/99"),
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(r.status, 404);
    // The schema's enum: a state GitHub does not have is refused (400, as every body that
    // breaks the schema) before anything changes.
    let r = c
        .call(
            "pulls/update",
            "PATCH",
            &format!("{pulls}/2"),
            Some(json!({"state": "merged"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(emu.pull(REPO, 2).expect("pull")["state"], "open");

    // Issues share the numbers; labels go on issues and pull requests alike.
    let r = c
        .call(
            "issues/create",
            "POST",
            &format!("/repos/{REPO}/issues"),
            Some(json!({"title": "Expired: cart-preview", "body": "why", "labels": ["paved", "expired"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let issue = r.body["number"].as_u64().expect("number");
    assert_eq!(issue, 8, "after pull request 7");
    assert_eq!(r.body["user"]["login"], "paved[bot]");
    assert_eq!(
        emu.issue(REPO, issue).expect("issue")["title"],
        "Expired: cart-preview"
    );
    let r = c
        .call(
            "issues/add-labels",
            "POST",
            &format!("/repos/{REPO}/issues/{issue}/labels"),
            Some(json!({"labels": ["expired", {"name": "ttl"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r
        .body
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["paved", "expired", "ttl"]);
    let r = c
        .call(
            "issues/add-labels",
            "POST",
            &format!("/repos/{REPO}/issues/2/labels"),
            Some(json!({"labels": ["paved"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.labels(REPO, 2), ["paved"]);
    let r = c
        .call(
            "issues/add-labels",
            "POST",
            &format!("/repos/{REPO}/issues/99/labels"),
            Some(json!({"labels": ["x"]})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .call(
            "issues/create",
            "POST",
            &format!("/repos/{REPO}/issues"),
            Some(json!({"body": "no title"})),
        )
        .await;
    assert_eq!(r.status, 400, "a title is required");
    assert!(
        emu.issue(REPO, 9).is_none(),
        "nothing stored for a refused issue"
    );
    // Edited in place, closed, reopened; never a new number.
    let edit = |body: Value| {
        let path = format!("/repos/{REPO}/issues/{issue}");
        (path, Some(body))
    };
    let (path, body) = edit(json!({"body": "still drifted: 2 resources"}));
    let r = c.call("issues/update", "PATCH", &path, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["number"], issue);
    assert_eq!(r.body["title"], "Expired: cart-preview", "untouched");
    assert_eq!(
        emu.issue(REPO, issue).expect("issue")["body"],
        "still drifted: 2 resources"
    );
    let (path, body) = edit(json!({"state": "closed", "state_reason": "completed"}));
    let r = c.call("issues/update", "PATCH", &path, body).await;
    assert_eq!(r.body["state"], "closed");
    assert!(r.body["closed_at"].is_string(), "{}", r.body);
    let (path, body) = edit(json!({"state": "open"}));
    let r = c.call("issues/update", "PATCH", &path, body).await;
    assert_eq!(r.body["state"], "open");
    assert_eq!(r.body["state_reason"], "reopened");
    let (path, body) = edit(json!({"state": "shut"}));
    let r = c.call("issues/update", "PATCH", &path, body).await;
    assert_eq!(r.status, 400, "not a state GitHub knows");
    let r = c
        .call(
            "issues/update",
            "PATCH",
            &format!("/repos/{REPO}/issues/99"),
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(r.status, 404);

    // Permissions: set, known without one, unknown.
    emu.set_permission(REPO, "octocat", "maintain");
    emu.add_user_token("gho_hubot", "hubot");
    let perm = |u: &str| format!("/repos/{REPO}/collaborators/{u}/permission");
    let r = c
        .call(
            "repos/get-collaborator-permission-level",
            "GET",
            &perm("octocat"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["permission"], "write",
        "maintain is write in the legacy field"
    );
    assert_eq!(r.body["role_name"], "maintain");
    assert_eq!(r.body["user"]["login"], "octocat");
    assert_eq!(r.body["user"]["permissions"]["maintain"], true);
    assert_eq!(r.body["user"]["permissions"]["admin"], false);
    let r = c
        .call(
            "repos/get-collaborator-permission-level",
            "GET",
            &perm("hubot"),
            None,
        )
        .await;
    assert_eq!(r.body["permission"], "none");
    let r = c
        .call(
            "repos/get-collaborator-permission-level",
            "GET",
            &perm("nobody-at-all"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(emu.response_schema_violations().is_empty());
    exactly(&c.checked, PULLS_ISSUES_PEOPLE);
}

#[tokio::test]
async fn branches_and_files_are_written_and_read_back() {
    let emu = emulator::start().await.expect("emulator starts");
    let mut c = Client::new(&emu);
    emu.set_ref(REPO, "main", SHA);
    emu.set_content(REPO, "main", "README.md", b"hello\n");
    let get_ref = |b: &str| format!("/repos/{REPO}/git/ref/heads/{b}");
    let r = c.call("git/get-ref", "GET", &get_ref("main"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["object"]["sha"], SHA);
    assert_eq!(r.body["ref"], "refs/heads/main");
    assert_eq!(
        c.call("git/get-ref", "GET", &get_ref("paved/x"), None)
            .await
            .status,
        404
    );

    // A branch, made once.
    let refs = format!("/repos/{REPO}/git/refs");
    let r = c
        .call(
            "git/create-ref",
            "POST",
            &refs,
            Some(json!({"ref": "refs/heads/paved/x", "sha": SHA})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c
        .call("git/get-ref", "GET", &get_ref("paved/x"), None)
        .await;
    assert_eq!(r.body["object"]["sha"], SHA);
    let again = c
        .call(
            "git/create-ref",
            "POST",
            &refs,
            Some(json!({"ref": "refs/heads/paved/x", "sha": SHA2})),
        )
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(
        c.call("git/get-ref", "GET", &get_ref("paved/x"), None)
            .await
            .body["object"]["sha"],
        SHA
    );
    let bad = c
        .call(
            "git/create-ref",
            "POST",
            &refs,
            Some(json!({"ref": "paved/y", "sha": SHA})),
        )
        .await;
    assert_eq!(bad.status, 422);

    // A file created on the branch: readable there, not on main; the branch moved.
    let file = format!("/repos/{REPO}/contents/environments/payments/cart.yaml");
    let text = "metadata:\n  name: cart\n";
    let put = |content: &str, sha: Option<&str>| {
        let mut b = json!({"message": "Add cart", "content": content, "branch": "paved/x"});
        if let Some(s) = sha {
            b["sha"] = json!(s);
        }
        b
    };
    let encoded = b64(text.as_bytes());
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(put(&encoded, None)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let blob = r.body["content"]["sha"]
        .as_str()
        .expect("blob sha")
        .to_string();
    let commit = r.body["commit"]["sha"]
        .as_str()
        .expect("commit")
        .to_string();
    assert_eq!(r.body["commit"]["parents"][0]["sha"], SHA);
    assert_eq!(r.body["commit"]["message"], "Add cart");
    let r = c
        .call("git/get-ref", "GET", &get_ref("paved/x"), None)
        .await;
    assert_eq!(
        r.body["object"]["sha"],
        commit.as_str(),
        "the branch moved to the new commit"
    );
    let raw = read(&c, &format!("{file}?ref=paved/x")).await;
    assert_eq!(raw.as_deref(), Some(text));
    assert_eq!(read(&c, &file).await, None, "main does not have it");

    // Replacing needs the file's sha: missing → 422, wrong → 409, right → 200.
    let text2 = "metadata:\n  name: cart\n  team: payments\n";
    let encoded2 = b64(text2.as_bytes());
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(put(&encoded2, None)),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(put(&encoded2, Some(SHA2))),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        read(&c, &format!("{file}?ref=paved/x")).await.as_deref(),
        Some(text)
    );
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(put(&encoded2, Some(&blob))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["commit"]["parents"][0]["sha"], commit.as_str());
    let blob2 = r.body["content"]["sha"].as_str().expect("sha").to_string();
    assert_eq!(
        read(&c, &format!("{file}?ref=paved/x")).await.as_deref(),
        Some(text2)
    );

    // Not Base64, a branch that does not exist: refused, nothing written.
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(put("not base64!", Some(&blob2))),
        )
        .await;
    assert_eq!(r.status, 422);
    let mut elsewhere = put(&encoded, None);
    elsewhere["branch"] = json!("no-such-branch");
    let r = c
        .call(
            "repos/create-or-update-file-contents",
            "PUT",
            &file,
            Some(elsewhere),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        read(&c, &format!("{file}?ref=paved/x")).await.as_deref(),
        Some(text2)
    );

    // Deleting needs the sha too.
    let del = |sha: &str| json!({"message": "Delete cart", "sha": sha, "branch": "paved/x"});
    let r = c
        .call("repos/delete-file", "DELETE", &file, Some(del(&blob)))
        .await;
    assert_eq!(r.status, 409, "the old sha");
    let r = c
        .call("repos/delete-file", "DELETE", &file, Some(del(&blob2)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["content"].is_null());
    assert_eq!(read(&c, &format!("{file}?ref=paved/x")).await, None);
    let r = c
        .call("repos/delete-file", "DELETE", &file, Some(del(&blob2)))
        .await;
    assert_eq!(r.status, 404);
    assert!(emu.response_schema_violations().is_empty());
    exactly(&c.checked, BRANCHES_FILES);
}

/// Between them, the two tests above answer exactly the writes this file owns.
#[test]
fn this_file_answers_every_write_it_owns() {
    let ids: BTreeSet<String> = emulator::operations()
        .expect("subset")
        .iter()
        .map(|op| op.operation_id.clone())
        .collect();
    let owned: BTreeSet<&str> = ANSWERED_HERE.iter().copied().collect();
    let tested: BTreeSet<&str> = PULLS_ISSUES_PEOPLE
        .iter()
        .chain(BRANCHES_FILES)
        .copied()
        .filter(|op| *op != "pulls/create")
        .collect();
    assert_eq!(owned, tested);
    for op in ANSWERED_HERE {
        assert!(ids.contains(*op), "{op} is not in the subset");
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A file's text through `GET .../contents` (raw), or `None` when it is not there.
async fn read(c: &Client, path: &str) -> Option<String> {
    let r = c
        .http
        .get(format!("{}{path}", c.base))
        .header("user-agent", "paved-tests")
        .header("authorization", &c.token)
        .header("accept", "application/vnd.github.raw+json")
        .send()
        .await
        .expect("the emulator answers");
    match r.status().as_u16() {
        200 => Some(r.text().await.expect("text")),
        404 => None,
        s => panic!("GET {path}: {s}"),
    }
}
