//! `paved demo`: the whole flow on this machine with no GitHub account. It starts the real
//! service (real SQLite file, real HTTP on loopback, real Git, real provisioning scripts),
//! makes a repository from `examples/`, sends signed webhooks built from GitHub's own example
//! payloads, and prints what GitHub would show:
//!
//! 1. two pull requests, one valid and one breaking the rules: commit statuses and the
//!    summary comment;
//! 2. the valid one merged: `paved/provision` on the merge commit, the GitHub deployment and
//!    its statuses, the environment in Paved's API, the site the `static-site` definition
//!    published, and the git note (`refs/notes/paved`) on the merge commit;
//! 3. a pull request deleting the manifest, merged: the environment torn down (`deleted`),
//!    and `paved audit` of the environment, read from Git alone.
//!
//! GitHub's API is answered by the same strict emulator the tests use.

mod lifecycle;

use crate::config::{Config, GithubAuth, RunnerConfig, Secret};
use crate::ids::{CommitSha, RepoName};
use crate::service::Service;
use anyhow::{Context, Result};
use github_emulator::EmulatorHandle;
use paved_testkit::{self as testkit, GitRemote, PullRequestSpec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The sample environments repository shipped with the source.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// How long any one step may take before the demo gives up.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// Who approves and merges the valid pull requests (a member of the `payments` team).
const REVIEWER: &str = "hubot";

struct DemoPr {
    number: u64,
    title: &'static str,
    path: &'static str,
    manifest: &'static str,
}

const PRS: &[DemoPr] = &[
    DemoPr {
        number: 1,
        title: "a valid request for a preview site",
        path: "environments/payments/orders-preview.yaml",
        manifest: "apiVersion: paved/v1
kind: Environment
metadata:
  name: orders-preview
  team: payments
  owner: octocat
spec:
  type: dev
  definition: static-site
  parameters:
    title: Orders preview
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

/// The portal's OAuth app at the emulator (the demo plays GitHub's side of sign-in too).
const PORTAL_CLIENT_ID: &str = "Iv1.paved-demo-portal";

/// Runs the demo; with `serve`, then keeps serving (the portal and the API) until Ctrl-C.
pub async fn run(keep: Option<PathBuf>, serve: bool) -> Result<()> {
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
    let (demo, base, sites) = set_up(&root, &examples).await?;
    let specs = open_prs(&demo, &base).await?;
    let env_name = "orders-preview";
    let merge = merge_valid(&demo, &specs[0], env_name, &sites).await?;
    lifecycle::drift_and_reconcile(&demo, env_name, &sites).await?;
    tear_down(&demo, &merge, env_name, &sites).await?;
    self_service(&demo).await?;
    lifecycle::expiry(&demo, "cart-preview").await?;

    println!(
        "== paved audit {env_name} --repo <the repository> (Git alone: commits and their notes) =="
    );
    let remote_path = demo.remote_path().display().to_string();
    crate::audit::run_cli(env_name, &remote_path, false, &[])?;
    println!();

    let rejected = demo.github.rejected();
    if !rejected.is_empty() {
        anyhow::bail!(
            "the emulator rejected {} request(s) as not matching GitHub's schema: {:?}",
            rejected.len(),
            rejected
        );
    }
    println!("Every request Paved made matched GitHub's published REST schema.");
    if serve {
        println!();
        println!("== The portal ==");
        println!("Open {}/ in a browser.", demo.service.url());
        println!(
            "\"Sign in with GitHub\" signs you in as octocat (team payments): the emulator plays GitHub."
        );
        println!("Serving until Ctrl-C.");
        tokio::signal::ctrl_c().await?;
        println!("Stopping.");
    }
    demo.service.shutdown().await?;
    Ok(())
}

/// The emulator, the repository made from `examples/`, and Paved running against them;
/// the base commit and the folder the static sites are published into.
async fn set_up(root: &Path, examples: &Path) -> Result<(Demo, CommitSha, PathBuf)> {
    // The emulator serves the repository's branches too: pull requests Paved opens for
    // requests are made from a branch it pushed.
    let github = github_emulator::Emulator::start_with(github_emulator::EmulatorConfig {
        git_root: Some(root.join("git")),
        ..Default::default()
    })
    .await?;
    println!("- GitHub API: strict emulator at {}", github.url());

    let repo_name = RepoName::parse("demo-org/environments")?;
    let remote = GitRemote::create(&root.join("git"), &repo_name)?;
    let files = GitRemote::files_of(examples)?;
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

    // The static-site definition publishes into SITES_ROOT, a variable the service config
    // gives to scripts ([runner.env] in paved.toml).
    let sites = root.join("sites");
    std::fs::create_dir_all(&sites)?;
    // Runs are sandboxed as an unprivileged user (SPEC 12): the sites folder is granted to
    // them as an operator grants it (`[[runner.mounts]]`, writable by the runner's user),
    // and the demo's own folder lets that user pass through to it, nothing more.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
        std::fs::set_permissions(&sites, std::fs::Permissions::from_mode(0o777))?;
    }
    let secret = hex::encode(rand::random::<[u8; 16]>());
    // The portal signs people in with an OAuth app registered at the emulator, which
    // authorizes them as octocat.
    let portal_secret = hex::encode(rand::random::<[u8; 16]>());
    github.register_oauth_app(PORTAL_CLIENT_ID, &portal_secret);
    github.sign_in_as("octocat");
    // The API answers only to a known caller: the demo reads it with a service token.
    let api_token = hex::encode(rand::random::<[u8; 16]>());
    // The demo's own clock, starting at the machine's time; its lifecycle part moves it.
    let clock = crate::clock::Clock::manual(crate::clock::wall());
    let config = Config {
        oidc: Default::default(),
        log_format: Default::default(),
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
        runner: RunnerConfig {
            env: vec![(
                "SITES_ROOT".into(),
                Secret::new(sites.display().to_string()),
            )],
            mounts: vec![(sites.clone(), true)],
            ..Default::default()
        },
        push_grace: std::time::Duration::from_secs(600),
        lease: std::time::Duration::from_secs(60),
        repositories: crate::config::RepoFilter::only(["demo-org/environments"]),
        checks: Default::default(),
        intake: Default::default(),
        report: None,
        store: Default::default(),
        portal: crate::config::PortalConfig {
            client_id: Some(PORTAL_CLIENT_ID.into()),
            client_secret: Some(Secret::new(portal_secret)),
            web_url: github.url(),
            ..Default::default()
        },
        // The demo moves this clock to show hours and days passing (SPEC 11).
        lifecycle: crate::config::LifecycleConfig {
            clock: clock.clone(),
            tick: std::time::Duration::from_secs(1),
            ..Default::default()
        },
        api: crate::config::ApiConfig {
            tokens: vec![crate::config::ServiceToken {
                name: "demo".into(),
                sha256: {
                    use sha2::Digest as _;
                    sha2::Sha256::digest(api_token.as_bytes()).into()
                },
            }],
            ..Default::default()
        },
    };
    let service = crate::service::start(config).await?;
    println!(
        "- Paved listening on {} with SQLite at {}/data/paved.sqlite",
        service.url(),
        root.display()
    );
    println!(
        "- scripts get SITES_ROOT={} from the service config\n",
        sites.display()
    );
    let demo = Demo {
        github,
        remote,
        repo: repo_name,
        service,
        client: reqwest::Client::new(),
        secret,
        api_token,
        clock,
    };
    Ok((demo, base, sites))
}

/// Opens each of [`PRS`] off `base` and prints what Paved said.
async fn open_prs(demo: &Demo, base: &CommitSha) -> Result<Vec<PullRequestSpec>> {
    let expires = (demo.clock.now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut specs = Vec::new();
    for pr in PRS {
        let manifest = pr.manifest.replace("EXPIRES", &expires);
        let spec = demo.remote.open_pull(
            pr.number,
            base,
            base,
            &[(pr.path.to_string(), Some(manifest.clone().into_bytes()))],
            pr.title,
        )?;
        println!("== PR #{}: {} ==", pr.number, pr.title);
        println!("adds {}:\n{}", pr.path, indent(&manifest));
        demo.open(&spec).await?;
        specs.push(spec);
    }
    Ok(specs)
}

/// The valid request is approved and merged: Paved provisions it. Returns the merge commit.
async fn merge_valid(
    demo: &Demo,
    valid: &PullRequestSpec,
    env_name: &str,
    sites: &Path,
) -> Result<CommitSha> {
    println!(
        "== Merge PR #{}: {REVIEWER} approves and merges it ==",
        valid.number
    );
    let merge = demo.merge(valid).await?;
    demo.print_provisioning(&merge, env_name).await?;
    if let Some(index) = site_index(sites, env_name) {
        println!("The site it published ({}):", index.display());
        let html = std::fs::read_to_string(&index)?;
        for line in html
            .lines()
            .filter(|l| l.starts_with("<h1>") || l.starts_with("<p>"))
        {
            println!("    {line}");
        }
        println!();
    }
    demo.print_note(&merge)?;
    for c in demo.github.comments(&demo.repo.to_string(), valid.number) {
        println!(
            "Summary comment (#{}) on PR #{}, edited after the merge:\n{}",
            c.id,
            valid.number,
            indent(&c.body)
        );
    }
    Ok(merge)
}

/// A member of the team asks for an environment through the API: Paved checks it, pushes a
/// branch and opens the pull request; a teammate approves, it merges, it is provisioned,
/// and the Graph knows it.
async fn self_service(demo: &Demo) -> Result<()> {
    const MEMBER: &str = "octocat";
    let token = hex::encode(rand::random::<[u8; 16]>());
    demo.github.add_user_token(&token, MEMBER);
    let name = "cart-preview";
    let expires = (demo.clock.now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    println!("== Self-service: {MEMBER} (team payments) asks Paved for an environment ==");
    println!(
        "$ PAVED_TOKEN=<{MEMBER}'s GitHub token> paved env request {name} --team payments --type dev \\\n    --template static-site --param title='Cart preview' --expires-at {expires} --tag cost-center=cc-1234"
    );
    let body = json!({
        "repository": demo.repo.to_string(), "action": "create", "environment": name,
        "team": "payments", "type": "dev", "template": "static-site",
        "parameters": {"title": "Cart preview"}, "expiresAt": expires,
        "tags": {"cost-center": "cc-1234"},
    });
    let api = demo.service.url();
    let r = demo
        .client
        .post(format!("{api}/api/v1/requests"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let opened: Value = r.json().await?;
    anyhow::ensure!(
        status.as_u16() == 201,
        "the request was refused: {status} {opened}"
    );
    let id = opened["id"].as_i64().unwrap_or_default();
    let number = opened["pullRequest"]["number"].as_u64().unwrap_or_default();
    println!(
        "POST /api/v1/requests answered {status}: request {id}, branch {}, pull request #{number}",
        str_of(&opened["branch"])
    );
    let pull = demo
        .github
        .pull(&demo.repo.to_string(), number)
        .context("the pull request Paved opened")?;
    let spec = PullRequestSpec::of_pull(&pull, &demo.repo, &demo.remote.clone_url())?;
    println!("GitHub sends the pull request's `opened` event; it is checked as {MEMBER}'s:");
    demo.open(&spec).await?;
    demo.print_request(&token, id).await?;
    println!("== Merge PR #{number}: {REVIEWER}, a teammate, approves and merges it ==");
    let merge = demo.merge(&spec).await?;
    demo.print_provisioning(&merge, name).await?;
    demo.print_request(&token, id).await?;
    let entity = format!("environment:{}/{name}", demo.repo);
    let v: Value = demo
        .client
        .get(format!("{api}/api/v1/entities/{entity}"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("GET /api/v1/entities/{entity}");
    for r in v["entity"]["relations"].as_array().into_iter().flatten() {
        println!("  {} {}", str_of(&r["type"]), str_of(&r["target"]));
    }
    for r in v["incoming"].as_array().into_iter().flatten() {
        println!("  {} of {}", str_of(&r["type"]), str_of(&r["target"]));
    }
    println!();
    Ok(())
}

/// A PR deleting the manifest, merged: the environment is torn down.
async fn tear_down(demo: &Demo, merge: &CommitSha, env_name: &str, sites: &Path) -> Result<()> {
    // Past the numbers the emulator gave out (the drift issue took #3).
    let number = 10;
    let title = "remove orders-preview, the review is done";
    let spec = demo.remote.open_pull(
        number,
        merge,
        merge,
        &[(PRS[0].path.to_string(), None)],
        title,
    )?;
    println!("== PR #{number}: {title} ==");
    println!("deletes {}\n", PRS[0].path);
    demo.open(&spec).await?;
    println!("== Merge PR #{number} ==");
    let teardown = demo.merge(&spec).await?;
    demo.print_provisioning(&teardown, env_name).await?;
    println!(
        "The site folder {}: {}\n",
        sites.join(env_name).display(),
        if sites.join(env_name).exists() {
            "still there"
        } else {
            "removed"
        }
    );
    demo.print_note(&teardown)
}

/// What the demo talks to.
struct Demo {
    github: EmulatorHandle,
    remote: GitRemote,
    repo: RepoName,
    service: Service,
    client: reqwest::Client,
    secret: String,
    /// A service token for reading the API.
    api_token: String,
    /// Paved's lifecycle clock, which the demo moves.
    clock: crate::clock::Clock,
}

impl Demo {
    fn remote_path(&self) -> PathBuf {
        self.remote
            .root
            .join(self.repo.owner())
            .join(format!("{}.git", self.repo.name()))
    }

    async fn send(&self, event: &str, body: Vec<u8>) -> Result<reqwest::StatusCode> {
        let delivery = format!("demo-{event}-{:08x}", rand::random::<u32>());
        testkit::post_webhook(
            &self.client,
            &self.service.url(),
            event,
            &delivery,
            &self.secret,
            body,
        )
        .await
    }

    /// Prints where request `id` stands, as its requester sees it.
    async fn print_request(&self, token: &str, id: i64) -> Result<()> {
        let v: Value = self
            .client
            .get(format!("{}/api/v1/requests/{id}", self.service.url()))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        println!(
            "GET /api/v1/requests/{id}: {} (requested by {})\n",
            str_of(&v["state"]).to_uppercase(),
            str_of(&v["requester"])
        );
        Ok(())
    }

    /// Sends the PR's `opened` event and prints the checks GitHub would show.
    async fn open(&self, spec: &PullRequestSpec) -> Result<()> {
        let started = Instant::now();
        // As on GitHub, the pull request exists in the API (its reviews can be listed).
        self.github.set_pull(
            &self.repo.to_string(),
            spec.number,
            testkit::pull_json(spec)?,
        );
        let status = self
            .send("pull_request", testkit::pull_request_payload(spec)?)
            .await?;
        println!("webhook answered {status} in {:?}", started.elapsed());
        wait_for_comment(&self.github, &self.repo, spec.number).await?;
        println!("checks done {:?} after sending\n", started.elapsed());
        print_outcome(
            &self.github,
            &self.repo,
            spec.head_sha.as_str(),
            spec.number,
        );
        Ok(())
    }

    /// Approves and merges the PR as GitHub would (a merge commit on `main`), sends the
    /// `closed` event with `merged: true`, and waits for `paved/provision` to settle.
    async fn merge(&self, spec: &PullRequestSpec) -> Result<CommitSha> {
        let repo = self.repo.to_string();
        let edits_before: u32 = self
            .github
            .comments(&repo, spec.number)
            .iter()
            .map(|c| c.edits)
            .sum();
        let merge = self.remote.merge_pull(spec)?;
        let body = testkit::merged_payload(spec, &merge, REVIEWER)?;
        // What GitHub's API answers about the PR from now on: merged, approved.
        let event: Value = serde_json::from_slice(&body)?;
        self.github
            .set_pull(&repo, spec.number, event["pull_request"].clone());
        self.github.set_pull_reviews(
            &repo,
            spec.number,
            vec![json!({
                "user": {"login": REVIEWER},
                "state": "APPROVED",
                "commit_id": spec.head_sha.as_str(),
            })],
        );
        println!(
            "merged as {} (first parent {}, second the PR head {})",
            merge.short(),
            spec.base_sha.short(),
            spec.head_sha.short()
        );
        let started = Instant::now();
        let status = self.send("pull_request", body).await?;
        println!(
            "`pull_request` closed (merged) webhook answered {status} in {:?}",
            started.elapsed()
        );
        let sha = merge.to_string();
        let number = spec.number;
        // Paved posts paved/provision, then edits the PR's summary comment: wait for both.
        self.github
            .wait_until(
                STEP_DEADLINE,
                "paved/provision on the merge commit and the updated summary comment",
                move |gh| {
                    let provisioned = gh
                        .latest_statuses(&repo, &sha)
                        .get(crate::handlers::merge::PROVISION_CONTEXT)
                        .is_some_and(|s| s.state != "pending");
                    let commented = gh
                        .comments(&repo, number)
                        .iter()
                        .map(|c| c.edits)
                        .sum::<u32>()
                        > edits_before;
                    provisioned && commented
                },
            )
            .await?;
        println!("provisioning done {:?} after sending\n", started.elapsed());
        Ok(merge)
    }

    /// The merge commit's statuses, its deployments and the environment in Paved's API.
    async fn print_provisioning(&self, merge: &CommitSha, env_name: &str) -> Result<()> {
        let repo = self.repo.to_string();
        println!("Commit statuses on the merge commit {}:", merge.short());
        for (context, s) in self.github.latest_statuses(&repo, merge.as_str()) {
            println!(
                "  {:<16} {:<8} {}",
                context,
                s.state,
                s.description.clone().unwrap_or_default()
            );
        }
        println!("\nGitHub deployments for {}:", merge.short());
        for d in self
            .github
            .deployments(&repo)
            .iter()
            .filter(|d| d.sha == merge.as_str())
        {
            let states: Vec<&str> = d.statuses.iter().map(|s| s.state.as_str()).collect();
            println!(
                "  #{} {} (task {}): {}",
                d.id,
                d.environment,
                d.task,
                states.join(" → ")
            );
            if let Some(last) = d.statuses.last() {
                println!("      {}", last.description);
                if !last.environment_url.is_empty() {
                    println!("      environment URL: {}", last.environment_url);
                }
                println!("      log: {}", last.log_url);
            }
        }

        let url = format!(
            "{}/api/v1/repos/{}/environments/{env_name}",
            self.service.url(),
            self.repo
        );
        let v: Value = self
            .client
            .get(&url)
            .bearer_auth(&self.api_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("the environment from Paved's API")?;
        let e = &v["environment"];
        println!("\nGET {url}");
        println!(
            "  {} ({}/{}, owner {}, definition {}): {}",
            str_of(&e["name"]),
            str_of(&e["team"]),
            str_of(&e["env_type"]),
            str_of(&e["owner"]),
            str_of(&e["definition"]),
            str_of(&e["state"]).to_uppercase()
        );
        if let Some(outputs) = e["outputs"].as_object().filter(|o| !o.is_empty()) {
            println!("  outputs (sensitive ones never leave Paved's database):");
            for (k, o) in outputs {
                println!("    {k} = {}", str_of(&o["value"]));
            }
        }
        println!("  operations, newest first:");
        for op in v["operations"].as_array().into_iter().flatten() {
            println!(
                "    run {} {} from PR #{} at {}: {} ({} → {})",
                op["id"],
                str_of(&op["kind"]),
                op["pr"],
                short(str_of(&op["merge_sha"])),
                str_of(&op["state"]),
                str_of(&op["started_at"]),
                str_of(&op["finished_at"])
            );
            if let Some(err) = op["error"].as_str() {
                println!("      error: {err}");
            }
        }
        println!();
        Ok(())
    }

    /// `git log --notes=paved -1 <merge>`: the audit note Paved pushed.
    fn print_note(&self, merge: &CommitSha) -> Result<()> {
        let git = git2::Repository::open(self.remote_path())?;
        let oid = git2::Oid::from_str(merge.as_str())?;
        let note = git
            .find_note(Some("refs/notes/paved"), oid)
            .with_context(|| format!("no note on {} in refs/notes/paved", merge.short()))?;
        println!(
            "Git note on {} (refs/notes/paved, pushed to the repository):",
            merge.short()
        );
        println!("{}", indent(note.message().unwrap_or_default()));
        Ok(())
    }
}

/// `index.html` of an environment's site, when there is one.
fn site_index(sites: &Path, env_name: &str) -> Option<PathBuf> {
    let p = sites.join(env_name).join("index.html");
    p.is_file().then_some(p)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

async fn wait_for_comment(github: &EmulatorHandle, repo: &RepoName, number: u64) -> Result<()> {
    let repo_s = repo.to_string();
    github
        .wait_until(STEP_DEADLINE, "the summary comment", move |gh| {
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
