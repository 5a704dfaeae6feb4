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
