//! The Graph and the Orchestrator under load, against the real server (SQLite file, HTTP on
//! loopback, the strict emulator):
//! - `GET /api/v1/entities?kind=environment&per_page=100` and one environment entity with
//!   its relations, with 100 and with 10,000 environments in the inventory: p50 and p99,
//!   and their ratio to `GET /healthz` measured in the same run;
//! - request → pull request opened (`POST /api/v1/requests` answered 201): p50.
//!
//! Both inventories are served at once and measured in turn (one request to each), so noise
//! on this machine falls on both alike.
//!
//! `cargo bench --bench api_graph` (`PAVED_BENCH_ROUNDS`, default 200 requests per figure).

use github_emulator::Emulator;
use paved::config::{Config, GithubAuth, Secret};
use paved::ids::RepoName;
use paved::store::{EnvState, EnvironmentUpdate, InventoryStore};
use paved_testkit::{FileChange, GitRemote};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "gho_bench_member_token";

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Run {
    _tmp: tempfile::TempDir,
    service: paved::service::Service,
    client: reqwest::Client,
    _github: github_emulator::EmulatorHandle,
}

async fn start(environments: usize) -> anyhow::Result<Run> {
    let tmp = tempfile::tempdir()?;
    let git = tmp.path().join("git");
    let cfg = github_emulator::EmulatorConfig {
        git_root: Some(git.clone()),
        ..Default::default()
    };
    let github = Emulator::start_with(cfg).await?;
    github.add_user_token(TOKEN, "octocat");
    let repo = RepoName::parse("bench/environments")?;
    let remote = GitRemote::create(&git, &repo)?;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<FileChange> = GitRemote::files_of(&examples)?;
    // The inventory is filled beyond the example's quota of 5.
    for (path, content) in files.iter_mut() {
        if path == ".paved/platform.yaml" {
            let text = String::from_utf8(content.take().unwrap_or_default())?;
            *content = Some(
                text.replace("environments: 5", "environments: 100000")
                    .into_bytes(),
            );
        }
    }
    remote.commit("refs/heads/main", None, &files, "base")?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let url = format!("sqlite://{}", data.join("paved.sqlite").display());
    {
        let store = paved::store::sqlite::SqliteStore::open(&url).await?;
        for i in 0..environments {
            store
                .upsert_environment(EnvironmentUpdate {
                    repo: repo.clone(),
                    name: format!("env-{i:05}").parse()?,
                    team: "payments".parse()?,
                    owner: "octocat".parse()?,
                    env_type: "dev".into(),
                    definition: "static-site".into(),
                    state: EnvState::Ready,
                    parameters: Some(serde_json::json!({"title": "t"})),
                    outputs: Some(serde_json::json!({"url": {"type": "string", "value": "https://x.test", "sensitive": false}})),
                    last_operation: None,
                    new_generation: false,
                })
                .await?;
        }
    }
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data,
        database_url: url,
        public_url: Some("http://paved.bench".into()),
        workers: 4,
        webhook_secrets: vec![Secret::new("bench-secret-123")],
        api_url: github.url(),
        auth: Some(GithubAuth::Token(Secret::new("bench-token-123"))),
        clone_url_template: Some(remote.clone_url_template()),
        runner: Default::default(),
        push_grace: Duration::from_secs(600),
        lease: Duration::from_secs(60),
        repositories: paved::config::RepoFilter::only(["bench/environments"]),
        checks: Default::default(),
        intake: Default::default(),
        report: None,
        store: Default::default(),
        portal: Default::default(),
        lifecycle: Default::default(),
        oidc: Default::default(),
        log_format: Default::default(),
        api: Default::default(),
    };
    let service = paved::service::start(config).await?;
    Ok(Run {
        _tmp: tmp,
        service,
        client: reqwest::Client::new(),
        _github: github,
    })
}

async fn once(run: &Run, path: &str) -> anyhow::Result<Duration> {
    let url = format!("{}{path}", run.service.url());
    let t = Instant::now();
    let r = run.client.get(&url).bearer_auth(TOKEN).send().await?;
    anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
    let _ = r.bytes().await?;
    Ok(t.elapsed())
}

/// `rounds` requests for `path` to each of `runs`, interleaved (one to each in turn), so
/// that whatever else the machine does falls on all of them alike.
async fn interleaved(
    runs: &[&Run],
    path: &dyn Fn(&Run) -> String,
    rounds: usize,
) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut out = vec![Vec::with_capacity(rounds); runs.len()];
    for _ in 0..rounds {
        for (i, run) in runs.iter().enumerate() {
            out[i].push(once(run, &path(run)).await?);
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let rounds: usize = std::env::var("PAVED_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        println!(
            "{rounds} requests per figure, as a member of the environments' team; the two \
             inventories served at once and measured in turn\n"
        );
        println!(
            "{:<44} {:>9} {:>9} {:>12}",
            "", "p50 ms", "p99 ms", "p99/healthz"
        );
        let sizes = [100usize, 10_000];
        let small = start(sizes[0]).await?;
        let large = start(sizes[1]).await?;
        let runs = [&small, &large];
        let page = "/api/v1/entities?kind=environment&per_page=100".to_string();
        // Warm up: roles, governance and the mirror are read once.
        interleaved(&runs, &|_| page.clone(), 3).await?;
        let health = interleaved(&runs, &|_| "/healthz".to_string(), rounds).await?;
        let pages = interleaved(&runs, &|_| page.clone(), rounds).await?;
        let one = |run: &Run| {
            let n = if std::ptr::eq(run, &small) {
                sizes[0]
            } else {
                sizes[1]
            };
            format!(
                "/api/v1/entities/environment:bench/environments/env-{:05}",
                n / 2
            )
        };
        let entities = interleaved(&runs, &one, rounds).await?;
        let mut lookup_p50 = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let (mut h, mut p, mut e) = (health[i].clone(), pages[i].clone(), entities[i].clone());
            let (h50, h99) = (pct(&mut h, 0.5), pct(&mut h, 0.99));
            println!(
                "{:<44} {h50:>9.2} {h99:>9.2} {:>12}",
                format!("GET /healthz ({n} environments)"),
                "1.0"
            );
            let (p50, p99) = (pct(&mut p, 0.5), pct(&mut p, 0.99));
            println!(
                "{:<44} {p50:>9.2} {p99:>9.2} {:>12.1}",
                format!("entities, page of 100 ({n})"),
                p99 / h99
            );
            let (e50, e99) = (pct(&mut e, 0.5), pct(&mut e, 0.99));
            println!(
                "{:<44} {e50:>9.2} {e99:>9.2} {:>12.1}",
                format!("one entity with relations ({n})"),
                e99 / h99
            );
            lookup_p50.push(e50);
        }
        // Request → pull request opened.
        let mut opened = Vec::new();
        for i in 0..20 {
            let body = serde_json::json!({
                "repository": "bench/environments", "action": "create",
                "environment": format!("req-{i:03}"), "team": "payments",
                "type": "dev", "template": "static-site",
                "parameters": {"title": "Bench"},
                "expiresAt": "2035-12-31T00:00:00Z",
                "tags": {"cost-center": "cc-1234"},
            });
            let t = Instant::now();
            let r = small
                .client
                .post(format!("{}/api/v1/requests", small.service.url()))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await?;
            let status = r.status();
            let text = r.text().await?;
            anyhow::ensure!(status.as_u16() == 201, "request: {status} {text}");
            opened.push(t.elapsed());
        }
        let (o50, o99) = (pct(&mut opened, 0.5), pct(&mut opened, 0.99));
        println!(
            "{:<44} {o50:>9.2} {o99:>9.2}",
            "request -> pull request opened (20)"
        );
        println!(
            "\none entity, 10,000 vs 100 environments (p50): {:.2}x (target <= 1.5x)",
            lookup_p50[1] / lookup_p50[0]
        );
        small.service.shutdown().await?;
        large.service.shutdown().await?;
        Ok(())
    })
}
