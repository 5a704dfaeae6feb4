//! `paved demo`, part three: the lifecycle (SPEC 11) on the `static-site` example. The demo
//! moves Paved's clock (a manual one) instead of waiting hours: someone edits a site by
//! hand and the drift check finds it, opens an issue, and `/paved reconcile` puts it back;
//! then a requested environment reaches its `expiresAt`: a warning, the expiry, and the
//! pull request that removes its manifest.

use super::{str_of, Demo, STEP_DEADLINE};
use anyhow::{Context, Result};
use paved_testkit::{self as testkit, PullRequestSpec};
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

impl Demo {
    /// The environment as the API shows it (read with the demo's service token).
    async fn environment(&self, name: &str) -> Result<Value> {
        Ok(self
            .client
            .get(format!(
                "{}/api/v1/repos/{}/environments/{name}",
                self.service.url(),
                self.repo
            ))
            .bearer_auth(&self.api_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Polls the environment until `done` says so, or the step's deadline passes.
    async fn environment_until(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let env = self.environment(name).await?;
            if done(&env) {
                return Ok(env);
            }
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn move_clock(&self, by: chrono::Duration, why: &str) {
        self.clock.advance(by);
        println!(
            "(the demo moves Paved's clock {} hours, to {}: {why})",
            by.num_hours(),
            crate::timers::canonical(self.clock.now())
        );
    }
}

/// Someone edits the site by hand; the drift check finds it and opens an issue; a member
/// of the team comments `/paved reconcile`; the deploy runs again and the issue closes.
pub(super) async fn drift_and_reconcile(demo: &Demo, name: &str, sites: &Path) -> Result<()> {
    println!("== Drift: someone edits the site of {name} by hand ==");
    let index = sites.join(name).join("index.html");
    let html = std::fs::read_to_string(&index).context("the published site")?;
    let edited: String = html
        .lines()
        .map(|l| {
            if l.starts_with("<h1>") {
                "<h1>Edited by hand</h1>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&index, edited)?;
    println!("{}: the <h1> now says \"Edited by hand\"", index.display());
    demo.move_clock(
        chrono::Duration::hours(6),
        "lifecycle.drift_interval, 6h, has passed",
    );
    let env = demo
        .environment_until(name, "the drift check and its issue", |e| {
            e["environment"]["drift"]["state"] == "drifted"
                && e["environment"]["drift"]["issue"].is_u64()
        })
        .await?;
    let drift = &env["environment"]["drift"];
    let number = drift["issue"].as_u64().unwrap_or_default();
    println!(
        "static-site's status.sh exited 2 (drifted):\n{}",
        super::indent(str_of(&drift["summary"]))
    );
    let repo = demo.repo.to_string();
    let issue = demo
        .github
        .issue(&repo, number)
        .context("the drift issue")?;
    println!(
        "Paved opened issue #{number} \"{}\" (labels {:?}):\n{}",
        str_of(&issue["title"]),
        demo.github.labels(&repo, number),
        super::indent(str_of(&issue["body"]))
    );
    println!("GET /metrics: {}", drifted_gauge(demo).await?);

    println!("octocat (team payments) comments `/paved reconcile` on issue #{number}:");
    let mut v: Value = serde_json::from_slice(&testkit::issue_comment_payload(
        &demo.repo,
        &demo.remote.clone_url(),
        number,
        "/paved reconcile",
    )?)?;
    if let Some(issue) = v["issue"].as_object_mut() {
        issue.remove("pull_request");
    }
    v["comment"]["user"]["login"] = Value::String("octocat".into());
    let status = demo.send("issue_comment", serde_json::to_vec(&v)?).await?;
    println!("`issue_comment` webhook answered {status}");
    let env = demo
        .environment_until(name, "the reconcile and the check after it", |e| {
            e["environment"]["drift"]["state"] == "in_sync"
                && e["environment"]["drift"]["issue"].is_null()
        })
        .await?;
    for op in env["operations"].as_array().into_iter().flatten().take(1) {
        println!(
            "operation {} `{}` by {}: {}",
            op["id"],
            str_of(&op["kind"]),
            str_of(&op["requester"]),
            str_of(&op["state"])
        );
    }
    let issue = demo.github.issue(&repo, number).context("the issue")?;
    println!(
        "the check right after: in sync; issue #{number} is {} ({})",
        str_of(&issue["state"]),
        str_of(&issue["state_reason"])
    );
    println!("GET /metrics: {}\n", drifted_gauge(demo).await?);
    Ok(())
}

async fn drifted_gauge(demo: &Demo) -> Result<String> {
    let text = demo
        .client
        .get(format!("{}/metrics", demo.service.url()))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("paved_environments{state=\"drifted\"}"))
        .unwrap_or_default()
        .to_string())
}

/// The environment reaches its `expiresAt`: the owner is warned a day ahead, then it is
/// deleted (operation `expire`) and a pull request removes its manifest; merging that
/// runs nothing.
pub(super) async fn expiry(demo: &Demo, name: &str) -> Result<()> {
    let env = demo.environment(name).await?;
    let due = |kind: &str| {
        env["upcoming"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["kind"] == kind)
            .map(|u| str_of(&u["due_at"]).to_string())
            .unwrap_or_default()
    };
    let (warn_at, expire_at) = (due("warn"), due("expire"));
    println!("== Expiry: {name} expires at {expire_at} ==");
    println!("upcoming: warning at {warn_at}, expiry at {expire_at}");
    let pr = env["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|o| o["pr"].as_u64().filter(|n| *n > 0))
        .context("the pull request that made it")?;
    let to = |at: &str| -> Result<chrono::Duration> {
        let t = chrono::DateTime::parse_from_rfc3339(at)?.with_timezone(&chrono::Utc);
        Ok(t - demo.clock.now() + chrono::Duration::minutes(1))
    };
    demo.move_clock(to(&warn_at)?, "the warning is due");
    let repo = demo.repo.to_string();
    demo.github
        .wait_until(STEP_DEADLINE, "the expiry warning", {
            let repo = repo.clone();
            move |gh| {
                gh.comments(&repo, pr)
                    .iter()
                    .any(|c| c.body.contains("paved:expiry-warning"))
            }
        })
        .await?;
    if let Some(c) = demo
        .github
        .comments(&repo, pr)
        .into_iter()
        .find(|c| c.body.contains("paved:expiry-warning"))
    {
        println!("Paved comments on PR #{pr}:\n{}", super::indent(&c.body));
    }
    demo.move_clock(to(&expire_at)?, "expiresAt has passed");
    let env = demo
        .environment_until(name, "the expiry", |e| {
            e["environment"]["state"] == "deleted"
        })
        .await?;
    if let Some(op) = env["operations"].as_array().and_then(|o| o.first()) {
        println!(
            "operation {} `{}`: {} (ran delete.sh; state {})",
            op["id"],
            str_of(&op["kind"]),
            str_of(&op["state"]),
            str_of(&env["environment"]["state"])
        );
    }
    demo.github
        .wait_until(STEP_DEADLINE, "the cleanup pull request", {
            let repo = repo.clone();
            move |gh| cleanup_of(gh, &repo).is_some()
        })
        .await?;
    let pull = cleanup_of(&demo.github, &repo).context("the cleanup pull request")?;
    let number = pull["number"].as_u64().unwrap_or_default();
    println!(
        "Paved opened PR #{number} \"{}\" from branch {}:\n{}",
        str_of(&pull["title"]),
        str_of(&pull["head"]["ref"]),
        super::indent(str_of(&pull["body"]))
    );
    let spec = PullRequestSpec::of_pull(&pull, &demo.repo, &demo.remote.clone_url())?;
    demo.open(&spec).await?;
    println!("== Merge PR #{number}: the manifest goes; nothing runs ==");
    let merge = demo.merge(&spec).await?;
    let statuses = demo.github.latest_statuses(&repo, merge.as_str());
    if let Some(s) = statuses.get(crate::handlers::merge::PROVISION_CONTEXT) {
        println!(
            "{}: {} — {}\n",
            crate::handlers::merge::PROVISION_CONTEXT,
            s.state,
            s.description.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// The pull request Paved opened for an expired environment.
fn cleanup_of(gh: &github_emulator::EmulatorHandle, repo: &str) -> Option<Value> {
    gh.pulls(repo).into_iter().find(|p| {
        p["head"]["ref"]
            .as_str()
            .is_some_and(|r| r.starts_with("paved/expired/"))
    })
}
