//! Setting Paved up and keeping it: `paved init` writes a platform repository that
//! `paved check` passes and on which a pull request goes green; `paved backup` copies the
//! SQLite database under a stream of deliveries, and `paved restore` puts it back (never
//! under a running server), after which a server has every delivery acknowledged before the
//! backup and goes on. Each runs the real `paved` binary.

/// `false`: this binary's harnesses use SQLite (backups are SQLite's).
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::serve::{spawn_serve, Paved};
use common::Harness;
use std::path::Path;
use std::process::{Command, Output};

fn paved(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("run paved")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_repository_that_checks_and_on_which_a_request_goes_green() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("platform");
    let dir_s = dir.to_str().expect("utf-8");
    let init = [
        "init", dir_s, "--team", "payments", "--admin", "admin1", "--member", "octocat",
    ];
    let out = paved(&init, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        ".paved/platform.yaml",
        ".paved/schemas/environment.schema.json",
        ".paved/schemas/platform.schema.json",
        "catalog/static-site/deploy.sh",
        "catalog/postgres-db/environment.yaml",
        "environments/README.md",
        ".github/workflows/paved-check.yml",
    ] {
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    let platform = std::fs::read_to_string(dir.join(".paved/platform.yaml")).expect("read");
    assert!(
        platform.contains("members: [admin1]") && platform.contains("members: [octocat]"),
        "{platform}"
    );
    let workflow =
        std::fs::read_to_string(dir.join(".github/workflows/paved-check.yml")).expect("read");
    assert!(workflow.contains("check ."), "{workflow}");
    let out = paved(&["check", dir_s], &[]);
    assert!(
        out.status.success(),
        "paved check fails on what init wrote:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Run again, it writes nothing over what is there.
    std::fs::write(dir.join(".paved/platform.yaml"), "edited by hand\n").expect("edit");
    let again = paved(&init, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stdout));
    assert!(text(&again.stderr).contains("exist already"));
    std::fs::write(dir.join(".paved/platform.yaml"), platform).expect("put back");

    // That repository on "GitHub": a pull request adding an environment goes green.
    let mut h = Harness::prepare_from(&dir, &[], |_, _| {}).await;
    h.service = Some(
        paved::service::start(h.config())
            .await
            .expect("start paved"),
    );
    let expires = (chrono::Utc::now() + chrono::Duration::days(7)).format("%Y-%m-%dT00:00:00Z");
    let manifest = format!(
        "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: shop-site\n  team: payments\n  owner: octocat\nspec:\n  type: dev\n  definition: static-site\n  expiresAt: {expires}\n  tags: {{ cost-center: cc-1234 }}\n"
    );
    let pr = h.push_pr(
        1,
        None,
        &[(
            "environments/payments/shop-site.yaml".into(),
            Some(manifest.into_bytes()),
        )],
    );
    h.send_pr(&pr).await;
    let verdicts = h.verdicts(&pr.head_sha, 4).await;
    assert!(
        verdicts.values().all(|s| s.state == "success"),
        "{verdicts:#?}"
    );
    // dev asks for no approval (prod does): its checks, and the preview of static-site's
    // plan.sh.
    for context in ["paved/schema", "paved/policy", "paved/quota", "paved/plan"] {
        assert!(verdicts.contains_key(context), "{context}: {verdicts:#?}");
    }
}

/// A `pull_request` delivery of `pr` with id `id`: the status Paved answered.
async fn deliver(h: &Harness, body: &[u8], id: &str) -> reqwest::StatusCode {
    h.send("pull_request", id, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_deliveries_restores_everything_acknowledged_before_it_and_goes_on() {
    let mut h = Harness::prepare(&[]).await;
    let pr = h.push_pr(
        7,
        None,
        &[(
            "environments/payments/backed-up.yaml".into(),
            Some(common::manifest("backed-up", "small").into_bytes()),
        )],
    );
    let body = paved_testkit::pull_request_payload(&pr).expect("payload");
    let data = h.data_dir();
    let db = h.config().database_url;
    let (server, url) = spawn_serve(&h, &data, &db, &h.github.url(), &[]).await;
    h.external_url = Some(url);
    let env = [("PAVED_DATA_DIR", data.as_path())];
    let backup = h.tmp.path().join("paved-backup.sqlite");

    // A stream of deliveries; the backup starts once 25 are acknowledged, and the stream
    // goes on while it runs.
    let mut before = Vec::new();
    while before.len() < 25 {
        let id = h.delivery_id();
        assert_eq!(deliver(&h, &body, &id).await, 202);
        before.push(id);
    }
    let mut taking = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["backup", "--out"])
        .arg(&backup)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_DATA_DIR", &data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("paved backup");
    let mut during = 0;
    while taking.try_wait().expect("backup").is_none() || during < 5 {
        let id = h.delivery_id();
        assert_eq!(deliver(&h, &body, &id).await, 202);
        during += 1;
    }
    let taken = taking.wait_with_output().expect("backup");
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    // It says what it holds: at least what was acknowledged before it began, at most
    // what was by its end.
    let said = text(&taken.stdout);
    let held: usize = said
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {said:?}"));
    assert!(
        said.contains("integrity checked") && (25..=25 + during).contains(&held),
        "{said} ({during} delivered during the backup)"
    );
    // Taken again onto the same file: refused, the backup kept.
    let again = paved(&["backup", "--out", backup.to_str().expect("utf-8")], &env);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );

    // Never under a running server.
    let refused = paved(&["restore", backup.to_str().expect("utf-8")], &env);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("a Paved server holds"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(
        deliver(&h, &body, &h.delivery_id()).await,
        202,
        "the refused restore disturbed the server"
    );
    drop::<Paved>(server);

    // Restored, a new server has every delivery acknowledged before the backup began (a
    // redelivery is a duplicate), works them off, and takes new ones.
    let restored = paved(&["restore", backup.to_str().expect("utf-8")], &env);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert!(
        text(&restored.stdout).contains("the database it replaced is at"),
        "{}",
        text(&restored.stdout)
    );
    let (_server, url) = spawn_serve(&h, &data, &db, &h.github.url(), &[]).await;
    h.external_url = Some(url);
    for id in &before {
        assert_eq!(
            deliver(&h, &body, id).await,
            200,
            "{id}, acknowledged before the backup, is not in it"
        );
    }
    for id in &before {
        let d = h.wait_delivery(id).await;
        assert_eq!(d["state"], "done", "{d}");
    }
    let next = h.delivery_id();
    assert_eq!(deliver(&h, &body, &next).await, 202);
    assert_eq!(h.wait_delivery(&next).await["state"], "done");
}

/// `&quot;` and friends back to characters (what a browser does with an attribute).
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` after `from` in `html`.
fn attribute(html: &str, from: &str, name: &str) -> String {
    let at = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {html}"));
    let rest = &html[at..];
    let start = rest.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
    let end = rest[start..].find('"').expect("closing quote");
    unescape(&rest[start..start + end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_github_registers_an_app_and_paved_serves_with_what_it_wrote() {
    let key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app-private-key.pem"),
    )
    .expect("the test key");
    let mut h = Harness::prepare_with(&[], |c, git_root| {
        c.manifest_app_key = Some(key);
        c.require_issued_token = true;
        c.git_root = Some(git_root.to_path_buf());
    })
    .await;
    h.github.sign_in_as("admin1");
    let conf = h.tmp.path().join("conf");
    let config = conf.join("paved.toml");
    let emulator = h.github.url();

    // The flow: its page, posted to GitHub, GitHub's redirect back with the code.
    let mut setup = tokio::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args([
            "setup",
            "github",
            "--public-url",
            "https://paved.example.test",
        ])
        .args(["--web-url", &emulator, "--api-url", &emulator])
        .args(["--repository", common::REPO, "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("paved setup github");
    let mut out = tokio::io::BufReader::new(setup.stdout.take().expect("stdout"));
    let mut first = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut first)
        .await
        .expect("its first line");
    let page_url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no page in {first:?}"))
        .to_string();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser
        .get(&page_url)
        .send()
        .await
        .expect("the page")
        .text()
        .await
        .expect("text");
    let action = attribute(&page, "<form", "action");
    assert!(
        action.starts_with(&format!("{emulator}/settings/apps/new?state=")),
        "{action}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&attribute(&page, "name=\"manifest\"", "value")).expect("JSON");
    assert_eq!(
        manifest["hook_attributes"]["url"],
        "https://paved.example.test/webhooks/github"
    );
    assert_eq!(
        manifest["callback_urls"],
        serde_json::json!(["https://paved.example.test/oauth/callback"])
    );
    assert_eq!(manifest["public"], false);
    assert_eq!(
        manifest["default_permissions"],
        serde_json::json!({
            "checks": "write", "statuses": "write", "contents": "write",
            "pull_requests": "write", "issues": "write", "deployments": "write",
            "merge_queues": "read", "members": "read", "metadata": "read"
        })
    );
    assert_eq!(
        manifest["default_events"],
        serde_json::json!([
            "pull_request",
            "pull_request_review",
            "push",
            "issue_comment",
            "check_run",
            "merge_group"
        ])
    );
    let created = browser
        .post(&action)
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .expect("GitHub's new-App page");
    assert_eq!(created.status(), 302, "{:?}", created.text().await);
    let back = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let done = browser.get(&back).send().await.expect("the redirect back");
    assert_eq!(done.status(), 200);
    assert!(done
        .text()
        .await
        .expect("text")
        .contains("installations/new"));
    let status = setup.wait().await.expect("setup ends");
    assert!(status.success());
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut out, &mut rest)
        .await
        .expect("the rest");
    assert!(rest.contains("/installations/new"), "{rest}");

    // What it wrote: the App's settings, readable by their owner only.
    let apps = h.github.created_apps();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];
    assert_eq!(app.owner, "admin1");
    let written = std::fs::read_to_string(&config).expect("paved.toml");
    for expected in [
        format!("app_id = {}", app.id),
        format!("webhook_secrets = [\"{}\"]", app.webhook_secret),
        format!("oauth_client_id = \"{}\"", app.client_id),
        "repositories = [\"acme/environments\"]".to_string(),
    ] {
        assert!(written.contains(&expected), "{expected} not in\n{written}");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in [&config, &conf.join("paved-app.pem")] {
        let mode = std::fs::metadata(f).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
    // Run again: nothing is written over.
    let again = paved(
        &[
            "setup",
            "github",
            "--public-url",
            "https://paved.example.test",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );

    // `paved serve` with it: a delivery signed with the new secret gets its checks as
    // check runs, made with installation tokens minted by JWTs signed with the new key.
    let port = common::serve::free_port();
    let log = std::fs::File::create(h.tmp.path().join("serve.log")).expect("log");
    let _server = common::serve::Paved(
        Command::new(env!("CARGO_BIN_EXE_paved"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
            .env("PAVED_DATA_DIR", h.data_dir())
            .env("PAVED_GIT_CLONE_URL_TEMPLATE", h.github.git_url_template())
            .env("PAVED_LOG", "paved=debug")
            .stderr(log)
            .spawn()
            .expect("paved serve"),
    );
    let url = format!("http://127.0.0.1:{port}");
    common::eventually("paved serve ready", async || {
        let r = h.client.get(format!("{url}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    h.external_url = Some(url);
    let pr = h.push_pr(
        3,
        None,
        &[(
            "environments/payments/by-app.yaml".into(),
            Some(common::manifest("by-app", "small").into_bytes()),
        )],
    );
    let body = paved_testkit::pull_request_payload(&pr).expect("payload");
    assert_eq!(
        h.send("pull_request", &h.delivery_id(), &body).await,
        401,
        "the harness's own secret is not the App's"
    );
    let signed = paved_testkit::sign(&app.webhook_secret, &body);
    assert_eq!(
        h.send_signed("pull_request", &h.delivery_id(), &body, &signed)
            .await,
        202
    );
    let sha = pr.head_sha.to_string();
    h.github
        .wait_until(common::DEADLINE, "the checks as check runs", move |gh| {
            let runs: Vec<_> = gh
                .check_runs(common::REPO)
                .into_iter()
                .filter(|c| c.head_sha == sha)
                .collect();
            ["paved/schema", "paved/policy", "paved/quota"]
                .iter()
                .all(|n| {
                    runs.iter()
                        .any(|c| c.name == *n && c.conclusion.as_deref() == Some("success"))
                })
        })
        .await
        .expect("check runs");
    let tokens = h.github.tokens();
    assert!(!tokens.is_empty(), "no installation token was minted");
}
