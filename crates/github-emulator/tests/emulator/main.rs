//! The GitHub emulator driven over real HTTP: strictness, state, pagination, faults, and
//! every answer checked against GitHub's published response schemas.

use std::time::Duration;

use github_emulator::schema;
use github_emulator::{self as emulator, Emulator, EmulatorConfig, EmulatorHandle, Fault, Outcome};
use serde_json::{json, Value};

const REPO: &str = "octo-org/environments";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA2: &str = "e5bd3914e2e596debea16f433f57875b5b90bcd6";

/// The manifest flow's conversion, answered 2xx in `apps.rs`.
const ANSWERED_IN_APPS: &[&str] = &["apps/create-from-manifest"];

/// The operations `tests/writes.rs` answers 2xx (it checks it exercises exactly these).
const ANSWERED_IN_WRITES: &[&str] = &[
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

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A client that behaves like a correct GitHub client (User-Agent + token).
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    user_agent: bool,
}

impl Client {
    fn new(emu: &EmulatorHandle) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: emu.url(),
            token: Some("token ghs_testtoken".to_string()),
            user_agent: true,
        }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if self.user_agent {
            req = req.header("user-agent", "paved-tests");
        }
        if let Some(token) = &self.token {
            req = req.header("authorization", token);
        }
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request reaches the emulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()), None)
            .await
    }
}

/// Asserts a 2xx JSON answer validates against the operation's response schema.
fn assert_schema(operation_id: &str, reply: &Reply, media: &str) {
    let schema = emulator::response_schema(operation_id, reply.status, media)
        .unwrap_or_else(|| panic!("no schema for {operation_id} {}", reply.status));
    if let Err(errors) = schema::validate(schema, &reply.body) {
        panic!(
            "{operation_id} {} does not match its schema: {errors:#?}",
            reply.status
        );
    }
}

fn status_path(repo: &str, sha: &str) -> String {
    format!("/repos/{repo}/statuses/{sha}")
}

fn assert_nothing_wrong(emu: &EmulatorHandle) {
    assert!(
        emu.response_schema_violations().is_empty(),
        "{:#?}",
        emu.response_schema_violations()
    );
}

mod answers;
mod apps;
mod validation;
mod writes;
