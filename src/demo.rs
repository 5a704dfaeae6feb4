//! `paved demo`: the whole PR-check flow on this machine with no GitHub account. It starts
//! the real service (real SQLite file, real HTTP on loopback, real Git), makes a repository
//! from `examples/`, sends signed `pull_request` events built from GitHub's own example
//! payload, and prints what GitHub would show: the commit statuses and the summary comment.
//! GitHub's API is answered by the same strict emulator the tests use.

use crate::config::{Config, GithubAuth, Secret};
use crate::forge::emulator::EmulatorHandle;
use crate::ids::RepoName;
use crate::testkit::{self, GitRemote};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// The sample environments repository shipped with the source.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

struct DemoPr {
    number: u64,
    title: &'static str,
    path: &'static str,
    manifest: &'static str,
}

const PRS: &[DemoPr] = &[
    DemoPr {
        number: 1,
        title: "a valid request for a dev database",
        path: "environments/payments/orders-preview.yaml",
        manifest: "apiVersion: paved/v1
kind: Environment
metadata:
  name: orders-preview
  team: payments
  owner: octocat
spec:
  type: dev
  definition: postgres-db
  parameters:
    size: small
  expiresAt: EXPIRES
  tags:
    cost-center: cc-1234
",
    },
    DemoPr {
        number: 2,
        title: "a request that breaks the platform team's rules",
        path: "environments/payments/big-preview.yaml",
        manifest: "apiVersion: paved/v1
kind: Environment
metadata:
  name: big-preview
  team: payments
  owner: octocat
spec:
  type: dev
  definition: postgres-db
  parameters:
    size: huge
  tags:
    owner: octocat
",
    },
];

pub async fn run(keep: Option<PathBuf>) -> Result<()> {
    let _tmp;
    let root = match keep {
        Some(p) => {
            std::fs::create_dir_all(&p)?;
            p
        }
        None => {
            _tmp = tempfile::tempdir()?;
            _tmp.path().to_path_buf()
        }
    };
    let examples = PathBuf::from(EXAMPLES);
    anyhow::ensure!(
        examples.is_dir(),
        "{} is missing: run the demo from a checkout of Paved",
        examples.display()
    );

    println!(
        "Paved demo: everything runs on this machine, in {}",
        root.display()
    );
    let github = crate::forge::emulator::Emulator::start().await?;
    println!("- GitHub API: strict emulator at {}", github.url());

    let repo_name = RepoName::parse("demo-org/environments")?;
    let remote = GitRemote::create(&root.join("git"), &repo_name)?;
    let files = GitRemote::files_of(&examples)?;
    let base = remote.commit(
        "refs/heads/main",
        None,
        &files,
        "Environments repository from examples/",
    )?;
    println!(
        "- Git repository {} with {} files from examples/ at {}",
        remote.clone_url(),
        files.len(),
        base.short()
    );

    let secret = hex::encode(rand::random::<[u8; 16]>());
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: root.join("data"),
        database_url: format!(
            "sqlite://{}",
            root.join("data").join("paved.sqlite").display()
        ),
        public_url: None,
        workers: 2,
        webhook_secrets: vec![Secret::new(secret.clone())],
        api_url: github.url(),
        auth: Some(GithubAuth::Token(Secret::new("demo-token"))),
        clone_url_template: Some(remote.clone_url_template()),
    };
    let service = crate::service::start(config).await?;
    println!(
        "- Paved listening on {} with SQLite at {}/data/paved.sqlite\n",
        service.url(),
        root.display()
    );

    let client = reqwest::Client::new();
    let expires = (chrono::Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for pr in PRS {
        let manifest = pr.manifest.replace("EXPIRES", &expires);
        let spec = remote.open_pull(
            pr.number,
            &base,
            &base,
            &[(pr.path.to_string(), Some(manifest.clone().into_bytes()))],
            pr.title,
        )?;
        let head = spec.head_sha.clone();
        let body = testkit::pull_request_payload(&spec)?;
        println!("== PR #{}: {} ==", pr.number, pr.title);
        println!("adds {}:\n{}", pr.path, indent(&manifest));
        let started = std::time::Instant::now();
        let delivery = format!("demo-{}-{}", pr.number, rand::random::<u32>());
        let status = testkit::post_webhook(
            &client,
            &service.url(),
            "pull_request",
            &delivery,
            &secret,
            body,
        )
        .await?;
        println!("webhook answered {status} in {:?}", started.elapsed());
        wait_for_comment(&github, &repo_name, pr.number).await?;
        println!("checks done {:?} after sending\n", started.elapsed());
        print_outcome(&github, &repo_name, &head.to_string(), pr.number);
    }
    let rejected = github.rejected();
    if !rejected.is_empty() {
        anyhow::bail!(
            "the emulator rejected {} request(s) as not matching GitHub's schema: {:?}",
            rejected.len(),
            rejected
        );
    }
    println!("Every request Paved made matched GitHub's published REST schema.");
    service.shutdown().await?;
    Ok(())
}

async fn wait_for_comment(github: &EmulatorHandle, repo: &RepoName, number: u64) -> Result<()> {
    let repo_s = repo.to_string();
    github
        .wait_until(Duration::from_secs(30), "the summary comment", move |gh| {
            !gh.comments(&repo_s, number).is_empty()
        })
        .await
}

fn print_outcome(github: &EmulatorHandle, repo: &RepoName, sha: &str, number: u64) {
    println!("Commit statuses on {}:", &sha[..7]);
    for (context, s) in github.latest_statuses(&repo.to_string(), sha) {
        println!(
            "  {:<16} {:<8} {}",
            context,
            s.state,
            s.description.clone().unwrap_or_default()
        );
    }
    for c in github.comments(&repo.to_string(), number) {
        println!("\nSummary comment (#{}):\n{}", c.id, indent(&c.body));
    }
    println!();
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}
