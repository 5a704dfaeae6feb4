//! Building blocks shared by `paved demo`, the integration tests and the benchmarks:
//! real Git repositories made on disk, GitHub's example webhook payloads rewritten to point
//! at them, and signatures over the exact bytes sent. Nothing here is used by `serve`.

use anyhow::{Context, Result};
use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Signature};
use paved_ids::{CommitSha, RepoName};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// GitHub's example `pull_request.opened` delivery (octokit/webhooks, MIT).
pub const PR_OPENED_FIXTURE: &str =
    include_str!("../../../tests/fixtures/github/webhooks/pull_request/opened.payload.json");
/// GitHub's example `issue_comment.created` delivery (octokit/webhooks, MIT).
pub const ISSUE_COMMENT_FIXTURE: &str =
    include_str!("../../../tests/fixtures/github/webhooks/issue_comment/created.payload.json");
/// GitHub's example `pull_request_review.submitted` delivery (octokit/webhooks, MIT).
/// GitHub's example `merge_group` `checks_requested` payload.
pub const MERGE_GROUP_FIXTURE: &str = include_str!(
    "../../../tests/fixtures/github/webhooks/merge_group/checks_requested.payload.json"
);
pub const REVIEW_FIXTURE: &str = include_str!(
    "../../../tests/fixtures/github/webhooks/pull_request_review/submitted.payload.json"
);
/// GitHub's example `push` delivery (octokit/webhooks, MIT).
pub const PUSH_FIXTURE: &str =
    include_str!("../../../tests/fixtures/github/webhooks/push/payload.json");
/// GitHub's example `ping` delivery (octokit/webhooks, MIT).
pub const PING_FIXTURE: &str =
    include_str!("../../../tests/fixtures/github/webhooks/ping/payload.json");

/// The service token tests and benches call Paved's API with (role `reader`).
pub const SERVICE_TOKEN: &str = "paved-tests-service-token-0123456789abcdef";

/// The SHA-256 of [`SERVICE_TOKEN`], in hex: what `[[api.tokens]]` / `PAVED_API_TOKENS`
/// configure.
pub fn service_token_sha256() -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(SERVICE_TOKEN.as_bytes()))
}

/// A client that sends `Authorization: Bearer` [`SERVICE_TOKEN`] with every request.
pub fn service_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {SERVICE_TOKEN}")) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `X-Hub-Signature-256` value for `body` under `secret`, computed here as GitHub documents
/// it (HMAC-SHA256, hex), independently of the code under test.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Mac as _, SimpleHmac};
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a webhook the way GitHub does, with `signature` as `X-Hub-Signature-256`.
pub async fn post_webhook_signed(
    client: &reqwest::Client,
    base_url: &str,
    event: &str,
    delivery: &str,
    signature: &str,
    body: Vec<u8>,
) -> Result<reqwest::StatusCode> {
    Ok(client
        .post(format!("{base_url}/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .context("sending the webhook")?
        .status())
}

/// Posts a webhook signed with `secret`.
pub async fn post_webhook(
    client: &reqwest::Client,
    base_url: &str,
    event: &str,
    delivery: &str,
    secret: &str,
    body: Vec<u8>,
) -> Result<reqwest::StatusCode> {
    let signature = sign(secret, &body);
    post_webhook_signed(client, base_url, event, delivery, &signature, body).await
}

/// The `terraform` binaries a Terraform test runs with: the real one (`terraform` or `tofu`
/// on `PATH`) where it is installed, and always the project's stand-in
/// (`tests/fixtures/terraform-standin/terraform`), so the tests never skip and the stand-in
/// stays honest against the same assertions as the real binary.
pub fn terraform_binaries() -> Vec<std::path::PathBuf> {
    let stand_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/terraform-standin/terraform");
    let path = std::env::var("PATH").unwrap_or_default();
    let real = path
        .split(':')
        .filter(|dir| std::path::Path::new(dir).is_absolute())
        .flat_map(|dir| ["terraform", "tofu"].map(|n| std::path::Path::new(dir).join(n)))
        .find(|p| p.is_file());
    real.into_iter()
        .chain([stand_in.canonicalize().unwrap_or(stand_in)])
        .collect()
}

/// A valid manifest for the example repository's `postgres-db` definition and `dev` type,
/// expiring in two days.
pub fn manifest(name: &str, team: &str, size: &str) -> String {
    let expires = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "apiVersion: paved/v1
kind: Environment
metadata:
  name: {name}
  team: {team}
  owner: octocat
spec:
  type: dev
  definition: postgres-db
  parameters:
    size: {size}
  expiresAt: {expires}
  tags:
    cost-center: cc-1234
"
    )
}

/// A bare repository on disk standing in for a GitHub repository, reachable through
/// `git.clone_url_template = file://<root>/{owner}/{repo}.git`.
pub struct GitRemote {
    pub root: PathBuf,
    pub name: RepoName,
    repo: Repository,
}

/// A file to write (`Some`) or delete (`None`) in a commit.
pub type FileChange = (String, Option<Vec<u8>>);

impl GitRemote {
    pub fn create(root: &Path, name: &RepoName) -> Result<GitRemote> {
        let path = root.join(name.owner()).join(format!("{}.git", name.name()));
        std::fs::create_dir_all(&path)?;
        let repo = Repository::init_bare(&path)?;
        // As on GitHub, HEAD names the default branch.
        repo.set_head("refs/heads/main")?;
        Ok(GitRemote {
            root: root.to_path_buf(),
            name: name.clone(),
            repo,
        })
    }

    pub fn clone_url_template(&self) -> String {
        format!("file://{}/{{owner}}/{{repo}}.git", self.root.display())
    }

    pub fn clone_url(&self) -> String {
        format!(
            "file://{}/{}/{}.git",
            self.root.display(),
            self.name.owner(),
            self.name.name()
        )
    }

    /// All files below `dir`, as changes that add them (paths relative to `dir`).
    pub fn files_of(dir: &Path) -> Result<Vec<FileChange>> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<FileChange>) -> Result<()> {
            for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
                let e = e?;
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out)?;
                } else {
                    let rel = p.strip_prefix(base)?.to_string_lossy().replace('\\', "/");
                    out.push((rel, Some(std::fs::read(&p)?)));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out)?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Commits `changes` on top of `parent` (or as a root commit) and points `refname` at
    /// the new commit. Scripts (`*.sh`) are stored executable.
    pub fn commit(
        &self,
        refname: &str,
        parent: Option<&CommitSha>,
        changes: &[FileChange],
        message: &str,
    ) -> Result<CommitSha> {
        let mut index = Index::new()?;
        let parent_commit = match parent {
            Some(p) => Some(self.repo.find_commit(Oid::from_str(p.as_str())?)?),
            None => None,
        };
        if let Some(pc) = &parent_commit {
            index.read_tree(&pc.tree()?)?;
        }
        for (path, content) in changes {
            match content {
                Some(bytes) => {
                    let oid = self.repo.blob(bytes)?;
                    let mode = if path.ends_with(".sh") {
                        0o100755
                    } else {
                        0o100644
                    };
                    index.add(&IndexEntry {
                        ctime: IndexTime::new(0, 0),
                        mtime: IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode,
                        uid: 0,
                        gid: 0,
                        file_size: bytes.len() as u32,
                        id: oid,
                        flags: path.len().min(0xfff) as u16,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    })?;
                }
                None => index.remove_path(Path::new(path))?,
            }
        }
        let tree_id = index.write_tree_to(&self.repo)?;
        let tree = self.repo.find_tree(tree_id)?;
        let sig = Signature::now("Paved Test", "paved@example.invalid")?;
        let parents: Vec<&git2::Commit> = parent_commit.iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parents)?;
        self.repo.reference(refname, oid, true, message)?;
        Ok(CommitSha::parse(&oid.to_string())?)
    }

    /// Commits `changes` on branch `pr-<number>` on top of `parent`, publishes it as
    /// `refs/pull/<number>/head`, and describes it as an `opened` PR by octocat against
    /// `main` at `base`, as GitHub would.
    pub fn open_pull(
        &self,
        number: u64,
        parent: &CommitSha,
        base: &CommitSha,
        changes: &[FileChange],
        message: &str,
    ) -> Result<PullRequestSpec> {
        let head_ref = format!("pr-{number}");
        let head = self.commit(
            &format!("refs/heads/{head_ref}"),
            Some(parent),
            changes,
            message,
        )?;
        self.publish_pull(number, &head)?;
        Ok(PullRequestSpec {
            action: "opened".into(),
            repo: self.name.clone(),
            clone_url: self.clone_url(),
            default_branch: "main".into(),
            number,
            head_ref,
            head_sha: head,
            base_ref: "main".into(),
            base_sha: base.clone(),
            author: "octocat".into(),
            head_repo: None,
        })
    }

    /// The bare repository's folder.
    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// The commit `refname` points at.
    /// Every ref of the remote with its target, sorted by name.
    pub fn refs(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for r in self.repo.references()? {
            let r = r?;
            if let (Some(name), Some(target)) = (r.name(), r.target()) {
                out.push((name.to_string(), target.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The text of `path` at `commit`.
    pub fn read_file(&self, commit: &CommitSha, path: &str) -> Result<String> {
        let c = self
            .repo
            .find_commit(git2::Oid::from_str(commit.as_str())?)?;
        let entry = c.tree()?.get_path(std::path::Path::new(path))?;
        let blob = self.repo.find_blob(entry.id())?;
        Ok(String::from_utf8_lossy(blob.content()).into_owned())
    }

    pub fn tip(&self, refname: &str) -> Result<CommitSha> {
        let oid = self.repo.refname_to_id(refname)?;
        Ok(CommitSha::parse(&oid.to_string())?)
    }

    /// Merges the PR's head into `main` as GitHub's "Create a merge commit" does: a commit
    /// whose first parent is `main`'s tip and second the PR head, with the merged tree.
    pub fn merge_pull(&self, spec: &PullRequestSpec) -> Result<CommitSha> {
        let oid = self.merge_commit(spec)?;
        self.repo
            .reference("refs/heads/main", oid, true, "merge pull request")?;
        Ok(CommitSha::parse(&oid.to_string())?)
    }

    /// What GitHub's merge queue does for PR `spec`: its merge with `main` on a branch of
    /// its own (`refs/heads/gh-readonly-queue/main/pr-<number>-<main>`), `main` left as it
    /// is. Returns the branch, the queue's commit and the `main` it builds on.
    pub fn queue_pull(&self, spec: &PullRequestSpec) -> Result<(String, CommitSha, CommitSha)> {
        let base = self.tip("refs/heads/main")?;
        let oid = self.merge_commit(spec)?;
        let branch = format!(
            "refs/heads/gh-readonly-queue/main/pr-{}-{}",
            spec.number,
            base.as_str()
        );
        self.repo.reference(&branch, oid, true, "merge queue")?;
        Ok((branch, CommitSha::parse(&oid.to_string())?, base))
    }

    /// The merge queue lands its commit: `main` moves to it (a fast-forward).
    pub fn land_queue(&self, commit: &CommitSha) -> Result<()> {
        self.repo.reference(
            "refs/heads/main",
            Oid::from_str(commit.as_str())?,
            true,
            "merge queue lands",
        )?;
        Ok(())
    }

    fn merge_commit(&self, spec: &PullRequestSpec) -> Result<Oid> {
        let main = self
            .repo
            .find_commit(self.repo.refname_to_id("refs/heads/main")?)?;
        let head = self
            .repo
            .find_commit(Oid::from_str(spec.head_sha.as_str())?)?;
        let mut index = self.repo.merge_commits(&main, &head, None)?;
        anyhow::ensure!(
            !index.has_conflicts(),
            "PR #{} conflicts with main",
            spec.number
        );
        let tree = self.repo.find_tree(index.write_tree_to(&self.repo)?)?;
        let sig = Signature::now("GitHub", "noreply@github.com")?;
        let message = format!(
            "Merge pull request #{} from {}/{}",
            spec.number,
            spec.repo.owner(),
            spec.head_ref
        );
        Ok(self
            .repo
            .commit(None, &sig, &sig, &message, &tree, &[&main, &head])?)
    }

    /// Points `refs/pull/<number>/head`, as GitHub does for every pull request
    /// (forks included); Paved fetches PR heads from there.
    pub fn publish_pull(&self, number: u64, head: &CommitSha) -> Result<()> {
        self.repo.reference(
            &format!("refs/pull/{number}/head"),
            Oid::from_str(head.as_str())?,
            true,
            "pull request head",
        )?;
        Ok(())
    }
}

/// What to put into a rewritten `pull_request` payload.
#[derive(Debug, Clone)]
pub struct PullRequestSpec {
    pub action: String,
    pub repo: RepoName,
    pub clone_url: String,
    pub default_branch: String,
    pub number: u64,
    pub head_ref: String,
    pub head_sha: CommitSha,
    pub base_ref: String,
    pub base_sha: CommitSha,
    pub author: String,
    /// Full name of the head repository when the PR comes from a fork.
    pub head_repo: Option<RepoName>,
}

impl PullRequestSpec {
    /// The `opened` event of a pull request as GitHub's API describes it (`pull`: its
    /// `GET /repos/{owner}/{repo}/pulls/{number}` answer), into `main` of `repo`: for pull
    /// requests Paved opened itself (requests, expiries).
    pub fn of_pull(pull: &Value, repo: &RepoName, clone_url: &str) -> Result<PullRequestSpec> {
        let text = |v: &Value, what: &str| -> Result<String> {
            v.as_str()
                .map(str::to_string)
                .with_context(|| format!("the pull request has no {what}"))
        };
        let sha =
            |v: &Value, what: &str| -> Result<CommitSha> { Ok(CommitSha::parse(&text(v, what)?)?) };
        Ok(PullRequestSpec {
            action: "opened".into(),
            repo: repo.clone(),
            clone_url: clone_url.to_string(),
            default_branch: "main".into(),
            number: pull["number"]
                .as_u64()
                .context("the pull request has no number")?,
            head_ref: text(&pull["head"]["ref"], "head ref")?,
            head_sha: sha(&pull["head"]["sha"], "head sha")?,
            base_ref: "main".into(),
            base_sha: sha(&pull["base"]["sha"], "base sha")?,
            author: text(&pull["user"]["login"], "author")?,
            head_repo: None,
        })
    }
}

fn set_repo(v: &mut Value, repo: &RepoName, clone_url: &str, default_branch: &str) {
    v["full_name"] = json!(repo.to_string());
    v["name"] = json!(repo.name());
    v["owner"]["login"] = json!(repo.owner());
    v["clone_url"] = json!(clone_url);
    v["default_branch"] = json!(default_branch);
    v["html_url"] = json!(format!("https://github.com/{repo}"));
}

/// GitHub's example `pull_request` payload rewritten with the test repository's names,
/// numbers and SHAs. Returns the compact JSON bytes, as GitHub sends them.
pub fn pull_request_payload(spec: &PullRequestSpec) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(PR_OPENED_FIXTURE)?;
    v["action"] = json!(spec.action);
    v["number"] = json!(spec.number);
    set_repo(
        &mut v["repository"],
        &spec.repo,
        &spec.clone_url,
        &spec.default_branch,
    );
    let pr = &mut v["pull_request"];
    pr["number"] = json!(spec.number);
    pr["user"]["login"] = json!(spec.author);
    pr["head"]["ref"] = json!(spec.head_ref);
    pr["head"]["sha"] = json!(spec.head_sha.as_str());
    pr["head"]["label"] = json!(format!("{}:{}", spec.repo.owner(), spec.head_ref));
    let head_repo = spec.head_repo.clone().unwrap_or_else(|| spec.repo.clone());
    set_repo(
        &mut pr["head"]["repo"],
        &head_repo,
        &spec.clone_url,
        &spec.default_branch,
    );
    pr["base"]["ref"] = json!(spec.base_ref);
    pr["base"]["sha"] = json!(spec.base_sha.as_str());
    set_repo(
        &mut pr["base"]["repo"],
        &spec.repo,
        &spec.clone_url,
        &spec.default_branch,
    );
    v["sender"]["login"] = json!(spec.author);
    if spec.action == "edited" {
        v["changes"] =
            json!({"base": {"ref": {"from": "old-base"}, "sha": {"from": "0".repeat(40)}}});
    }
    Ok(serde_json::to_vec(&v)?)
}

/// The `pull_request` `closed` event of a PR merged as `merge_sha` by `merger`.
pub fn merged_payload(
    spec: &PullRequestSpec,
    merge_sha: &CommitSha,
    merger: &str,
) -> Result<Vec<u8>> {
    let mut closed = spec.clone();
    closed.action = "closed".into();
    let mut v: Value = serde_json::from_slice(&pull_request_payload(&closed)?)?;
    let pr = &mut v["pull_request"];
    pr["state"] = json!("closed");
    pr["merged"] = json!(true);
    pr["merge_commit_sha"] = json!(merge_sha.as_str());
    pr["merged_by"] = pr["user"].clone();
    pr["merged_by"]["login"] = json!(merger);
    pr["merged_at"] = json!("2026-11-27T08:00:00Z");
    pr["closed_at"] = json!("2026-11-27T08:00:00Z");
    v["sender"]["login"] = json!(merger);
    Ok(serde_json::to_vec(&v)?)
}

/// GitHub's example `push` payload, as a push of `before..after` to `branch`.
pub fn push_payload(
    repo: &RepoName,
    clone_url: &str,
    branch: &str,
    before: &CommitSha,
    after: &CommitSha,
    pusher: &str,
) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(PUSH_FIXTURE)?;
    set_repo(&mut v["repository"], repo, clone_url, "main");
    v["repository"]["master_branch"] = json!("main");
    v["ref"] = json!(format!("refs/heads/{branch}"));
    v["before"] = json!(before.as_str());
    v["after"] = json!(after.as_str());
    v["created"] = json!(false);
    v["deleted"] = json!(false);
    v["pusher"]["name"] = json!(pusher);
    v["sender"]["login"] = json!(pusher);
    Ok(serde_json::to_vec(&v)?)
}

/// GitHub's example `merge_group` `checks_requested` payload, for the queue's commit `head`
/// made on `base` for pull request `number`, whose branch is `head_ref`.
pub fn merge_group_payload(
    repo: &RepoName,
    clone_url: &str,
    head_ref: &str,
    head: &CommitSha,
    base: &CommitSha,
) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(MERGE_GROUP_FIXTURE)?;
    set_repo(&mut v["repository"], repo, clone_url, "main");
    v["merge_group"]["head_ref"] = json!(head_ref);
    v["merge_group"]["head_sha"] = json!(head.as_str());
    v["merge_group"]["base_sha"] = json!(base.as_str());
    v["merge_group"]["base_ref"] = json!("refs/heads/main");
    v["merge_group"]["head_commit"]["id"] = json!(head.as_str());
    Ok(serde_json::to_vec(&v)?)
}

/// GitHub's example `issue_comment.created` payload, as a comment on PR `number`.
pub fn issue_comment_payload(
    repo: &RepoName,
    clone_url: &str,
    number: u64,
    body: &str,
) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(ISSUE_COMMENT_FIXTURE)?;
    set_repo(&mut v["repository"], repo, clone_url, "main");
    v["issue"]["number"] = json!(number);
    v["issue"]["pull_request"] =
        json!({"url": format!("https://api.github.com/repos/{repo}/pulls/{number}")});
    v["comment"]["body"] = json!(body);
    Ok(serde_json::to_vec(&v)?)
}

/// GitHub's example `pull_request_review` payload for the PR described by `spec`.
pub fn review_payload(spec: &PullRequestSpec, action: &str, reviewer: &str) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(REVIEW_FIXTURE)?;
    let pr: Value = serde_json::from_slice(&pull_request_payload(spec)?)?;
    v["action"] = json!(action);
    v["pull_request"] = pr["pull_request"].clone();
    v["repository"] = pr["repository"].clone();
    v["review"]["user"]["login"] = json!(reviewer);
    v["review"]["commit_id"] = json!(spec.head_sha.as_str());
    Ok(serde_json::to_vec(&v)?)
}

/// A `pulls/get` answer for the emulator, built from the same fixture.
pub fn pull_json(spec: &PullRequestSpec) -> Result<Value> {
    let v: Value = serde_json::from_slice(&pull_request_payload(spec)?)?;
    Ok(v["pull_request"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_signature_vector() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
