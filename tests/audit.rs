//! The audit trail in Git (SPEC section 5), end to end on real repositories: notes appended
//! and pushed to an origin, folders exported from commits, and `paved audit` reading an
//! environment's history from Git alone.

use paved::audit::{self, AuditRecord, CheckVerdict};
use paved::ids::{CommitSha, RepoName};
use paved::repo::notes::NOTES_REF;
use paved::repo::Mirror;
use paved_testkit::{FileChange, GitRemote};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENV: &str = "checkout-preview";

fn add(path: &str, text: &str) -> FileChange {
    (path.to_string(), Some(text.as_bytes().to_vec()))
}

fn remove(path: &str) -> FileChange {
    (path.to_string(), None)
}

fn record(env: &str, operation: &str, outcome: &str, run: i64) -> AuditRecord {
    AuditRecord {
        environment: env.into(),
        team: "payments".into(),
        operation: operation.into(),
        outcome: outcome.into(),
        run_id: Some(run),
        repository: "acme/envs".into(),
        pull_request: Some(run as u64 + 100),
        requester: Some("octocat".into()),
        merger: Some("hubot".into()),
        approvers: vec!["admin1".into(), "admin2".into()],
        checks: vec![
            CheckVerdict {
                context: "paved/schema".into(),
                verdict: "pass".into(),
            },
            CheckVerdict {
                context: "paved/policy".into(),
                verdict: "pass".into(),
            },
        ],
        governance_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        started_at: Some("2026-11-27T08:00:00.000Z".into()),
        finished_at: Some("2026-11-27T08:00:03.120Z".into()),
        message: Some(format!("{operation} {outcome}: run {run}")),
        attempt: Some(1),
    }
}

struct Origin {
    _tmp: tempfile::TempDir,
    tmp_path: PathBuf,
    remote: GitRemote,
}

impl Origin {
    fn new() -> Origin {
        let tmp = tempfile::tempdir().unwrap();
        let tmp_path = tmp.path().to_path_buf();
        let name = RepoName::parse("acme/envs").unwrap();
        let remote = GitRemote::create(&tmp_path.join("git"), &name).unwrap();
        Origin {
            _tmp: tmp,
            tmp_path,
            remote,
        }
    }
    fn bare_path(&self) -> PathBuf {
        self.tmp_path.join("git").join("acme").join("envs.git")
    }
    fn url(&self) -> String {
        self.remote.clone_url()
    }
    fn git(&self) -> git2::Repository {
        git2::Repository::open_bare(self.bare_path()).unwrap()
    }
    /// A mirror in its own data folder, as one replica of the service has.
    fn mirror(&self, replica: &str) -> Mirror {
        let m = Mirror::open(&self.tmp_path.join(replica), &self.remote.name).unwrap();
        m.fetch(
            &self.url(),
            &["+refs/heads/*:refs/remotes/origin/*".into()],
            None,
        )
        .unwrap();
        m
    }
    /// The note of `commit` on the origin itself.
    fn origin_note(&self, commit: &CommitSha) -> Option<String> {
        let repo = self.git();
        let oid = git2::Oid::from_str(commit.as_str()).unwrap();
        let note = match repo.find_note(Some(NOTES_REF), oid) {
            Ok(n) => n,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return None,
            Err(e) => panic!("{e}"),
        };
        Some(note.message().unwrap().to_string())
    }
}

#[test]
fn append_note_to_an_origin_without_notes_creates_the_ref() {
    let o = Origin::new();
    let c = o
        .remote
        .commit("refs/heads/main", None, &[add("README.md", "r")], "root")
        .unwrap();
    assert!(o.git().find_reference(NOTES_REF).is_err());
    let m = o.mirror("data");
    let r = record(ENV, "deploy", "succeeded", 1);
    m.append_note(&o.url(), None, &c, &audit::render(&r))
        .unwrap();
    assert!(o.git().find_reference(NOTES_REF).is_ok());
    assert_eq!(audit::parse(&o.origin_note(&c).unwrap()), vec![r.clone()]);
    assert_eq!(audit::parse(&m.notes_for(&c).unwrap().unwrap()), vec![r]);
}

#[test]
fn append_note_twice_keeps_both_records_locally_and_on_the_origin() {
    let o = Origin::new();
    let c = o
        .remote
        .commit("refs/heads/main", None, &[add("README.md", "r")], "root")
        .unwrap();
    let other = o
        .remote
        .commit(
            "refs/heads/main",
            Some(&c),
            &[add("README.md", "r2")],
            "next",
        )
        .unwrap();
    let m = o.mirror("data");
    let first = record(ENV, "deploy", "failed", 7);
    let mut second = record(ENV, "deploy", "succeeded", 7);
    second.attempt = Some(2);
    m.append_note(&o.url(), None, &c, &audit::render(&first))
        .unwrap();
    // A note on another commit in between moves the notes ref but not this note.
    m.append_note(
        &o.url(),
        None,
        &other,
        &audit::render(&record("search-dev", "deploy", "succeeded", 8)),
    )
    .unwrap();
    m.append_note(&o.url(), None, &c, &audit::render(&second))
        .unwrap();

    let want = vec![first, second];
    let local = m.notes_for(&c).unwrap().unwrap();
    assert_eq!(audit::parse(&local), want);
    let remote = o.origin_note(&c).unwrap();
    assert_eq!(audit::parse(&remote), want);
    assert_eq!(local, remote);
    // One blank line between blocks.
    assert_eq!(
        remote.matches("\n\nPaved-Audit: v1\n").count(),
        1,
        "{remote}"
    );
    assert_eq!(
        audit::parse(&o.origin_note(&other).unwrap())[0].environment,
        "search-dev"
    );
}

#[test]
fn two_replicas_appending_alternately_lose_nothing() {
    let o = Origin::new();
    let c = o
        .remote
        .commit("refs/heads/main", None, &[add("README.md", "r")], "root")
        .unwrap();
    let a = o.mirror("replica-a");
    let b = o.mirror("replica-b");
    let mut want = Vec::new();
    for i in 0..6 {
        let (mirror, outcome) = if i % 2 == 0 {
            (&a, "failed")
        } else {
            (&b, "succeeded")
        };
        let mut r = record(ENV, "deploy", outcome, 50);
        r.attempt = Some(i + 1);
        mirror
            .append_note(&o.url(), None, &c, &audit::render(&r))
            .unwrap();
        want.push(r);
    }
    assert_eq!(audit::parse(&o.origin_note(&c).unwrap()), want);
    // Each replica's local ref is as of its own last append: b wrote last.
    assert_eq!(audit::parse(&b.notes_for(&c).unwrap().unwrap()), want);
    assert_eq!(
        audit::parse(&a.notes_for(&c).unwrap().unwrap()),
        want[..5].to_vec()
    );
    // The notes ref on the origin is a chain of fast-forwards: one commit per append.
    let origin = o.git();
    let mut walk = origin.revwalk().unwrap();
    walk.push_ref(NOTES_REF).unwrap();
    assert_eq!(walk.count(), 6);
}

/// Commits `entries` (path, mode, object) on top of `parent` in the origin, with git2
/// directly: the test kit cannot make symlinks or submodules.
fn commit_raw(
    repo: &git2::Repository,
    parent: &CommitSha,
    entries: &[(&str, i32, git2::Oid)],
) -> CommitSha {
    let parent = repo
        .find_commit(git2::Oid::from_str(parent.as_str()).unwrap())
        .unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&parent.tree().unwrap()).unwrap();
    for (path, mode, id) in entries {
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: *mode as u32,
                uid: 0,
                gid: 0,
                file_size: 0,
                id: *id,
                flags: path.len() as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            })
            .unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
    let oid = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "raw",
            &tree,
            &[&parent],
        )
        .unwrap();
    CommitSha::parse(&oid.to_string()).unwrap()
}

#[cfg(unix)]
fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn export_dir_writes_modes_and_skips_symlinks_and_submodules() {
    let o = Origin::new();
    let base = o
        .remote
        .commit(
            "refs/heads/main",
            None,
            &[
                add(
                    "catalog/postgres-db/environment.yaml",
                    "name: postgres-db\n",
                ),
                add(
                    "catalog/postgres-db/scripts/deploy.sh",
                    "#!/bin/sh\necho hi\n",
                ),
                add("catalog/postgres-db/scripts/nested/params.json", "{}"),
                add("catalog/other/environment.yaml", "name: other\n"),
                add("secret.txt", "do not leak"),
            ],
            "catalog",
        )
        .unwrap();
    let repo = o.git();
    let target = repo.blob(b"../../../secret.txt").unwrap();
    let runner = repo.blob(b"#!/bin/sh\nexit 0\n").unwrap();
    let c = commit_raw(
        &repo,
        &base,
        &[
            ("catalog/postgres-db/link", 0o120000, target),
            ("catalog/postgres-db/scripts/run", 0o100755, runner),
            // A gitlink (submodule) to the base commit.
            (
                "catalog/postgres-db/vendored",
                0o160000,
                git2::Oid::from_str(base.as_str()).unwrap(),
            ),
        ],
    );
    let m = o.mirror("data");
    let out = o.tmp_path.join("out");
    let dest = out.join("postgres-db");
    assert!(m.export_dir(&c, "catalog/postgres-db", &dest).unwrap());

    let read = |p: &str| std::fs::read_to_string(dest.join(p)).unwrap();
    assert_eq!(read("environment.yaml"), "name: postgres-db\n");
    assert_eq!(read("scripts/deploy.sh"), "#!/bin/sh\necho hi\n");
    assert_eq!(read("scripts/run"), "#!/bin/sh\nexit 0\n");
    assert_eq!(read("scripts/nested/params.json"), "{}");
    assert!(std::fs::symlink_metadata(dest.join("link")).is_err());
    assert!(std::fs::symlink_metadata(dest.join("vendored")).is_err());
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["environment.yaml", "scripts"]);
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&dest.join("scripts/deploy.sh")), 0o755);
        assert_eq!(mode_of(&dest.join("scripts/run")), 0o755);
        assert_eq!(mode_of(&dest.join("environment.yaml")), 0o644);
        assert_eq!(mode_of(&dest.join("scripts/nested/params.json")), 0o644);
    }

    // Not a folder at that commit: nothing written.
    let missing = out.join("missing");
    assert!(!m.export_dir(&c, "catalog/nope", &missing).unwrap());
    assert!(!m
        .export_dir(&c, "catalog/postgres-db/environment.yaml", &missing)
        .unwrap());
    assert!(!missing.exists());
    // A hostile dir argument is refused.
    assert!(m.export_dir(&c, "catalog/../secret", &missing).is_err());
}

#[test]
fn export_dir_refuses_a_tree_with_a_dot_dot_entry() {
    let o = Origin::new();
    let base = o
        .remote
        .commit("refs/heads/main", None, &[add("README.md", "r")], "root")
        .unwrap();
    let repo = o.git();
    // libgit2 will not build such a tree, so write its bytes: `100644 ..\0<oid>`.
    let blob = repo.blob(b"escaped").unwrap();
    let mut raw = b"100644 ..\0".to_vec();
    raw.extend_from_slice(blob.as_bytes());
    let evil = repo
        .odb()
        .unwrap()
        .write(git2::ObjectType::Tree, &raw)
        .unwrap();
    let mut catalog = repo.treebuilder(None).unwrap();
    catalog.insert("evil", evil, 0o040000).unwrap();
    let catalog = catalog.write().unwrap();
    let parent = repo
        .find_commit(git2::Oid::from_str(base.as_str()).unwrap())
        .unwrap();
    let mut root = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    root.insert("catalog", catalog, 0o040000).unwrap();
    let root = repo.find_tree(root.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
    let c = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "evil",
            &root,
            &[&parent],
        )
        .unwrap();
    let c = CommitSha::parse(&c.to_string()).unwrap();
    let m = o.mirror("data");
    let out = o.tmp_path.join("out");
    let dest = out.join("evil");
    let err = m.export_dir(&c, "catalog/evil", &dest).unwrap_err();
    assert!(err.to_string().contains("\"..\""), "{err}");
    assert!(!out.join("..").join("escaped").exists());
    assert!(std::fs::read_dir(&dest).unwrap().next().is_none());
}

/// The history of an environment, built on the origin:
/// add (deploy succeeded) → another environment → modify (deploy failed) → a README change
/// whose note holds a record for the environment → delete (delete succeeded); plus a branch
/// that is not reachable from the default branch.
struct Story {
    origin: Origin,
    added: CommitSha,
    other_env: CommitSha,
    modified: CommitSha,
    note_only: CommitSha,
    deleted: CommitSha,
    unreachable: CommitSha,
}

fn story() -> Story {
    let origin = Origin::new();
    let r = &origin.remote;
    let path = format!("environments/payments/{ENV}.yaml");
    let added = r
        .commit(
            "refs/heads/main",
            None,
            &[
                add(&path, &paved_testkit::manifest(ENV, "payments", "small")),
                add("README.md", "envs"),
            ],
            "Add checkout-preview (#101)",
        )
        .unwrap();
    let other_env = r
        .commit(
            "refs/heads/main",
            Some(&added),
            &[add(
                "environments/search/search-dev.yaml",
                &paved_testkit::manifest("search-dev", "search", "small"),
            )],
            "Add search-dev (#102)",
        )
        .unwrap();
    let modified = r
        .commit(
            "refs/heads/main",
            Some(&other_env),
            &[add(
                &path,
                &paved_testkit::manifest(ENV, "payments", "large"),
            )],
            "Resize checkout-preview (#103)",
        )
        .unwrap();
    let note_only = r
        .commit(
            "refs/heads/main",
            Some(&modified),
            &[add("README.md", "envs, documented")],
            "Document the repository",
        )
        .unwrap();
    let deleted = r
        .commit(
            "refs/heads/main",
            Some(&note_only),
            &[remove(&path)],
            "Remove checkout-preview (#104)",
        )
        .unwrap();
    let unreachable = r
        .commit(
            "refs/heads/pr-105",
            Some(&deleted),
            &[add(
                &path,
                &paved_testkit::manifest(ENV, "payments", "small"),
            )],
            "Bring checkout-preview back (#105, open)",
        )
        .unwrap();
    origin.git().set_head("refs/heads/main").unwrap();

    let m = origin.mirror("data");
    let url = origin.url();
    let note = |c: &CommitSha, r: AuditRecord| {
        m.append_note(&url, None, c, &audit::render(&r)).unwrap();
    };
    note(&added, record(ENV, "deploy", "succeeded", 1));
    let mut search = record("search-dev", "deploy", "succeeded", 2);
    search.team = "search".into();
    note(&other_env, search);
    note(&modified, record(ENV, "deploy", "failed", 3));
    note(&note_only, record(ENV, "deploy", "interrupted", 3));
    note(&deleted, record(ENV, "delete", "succeeded", 4));
    note(&unreachable, record(ENV, "deploy", "refused", 5));
    Story {
        origin,
        added,
        other_env,
        modified,
        note_only,
        deleted,
        unreachable,
    }
}

fn paved(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(args)
        .env_remove("PAVED_LOG")
        .output()
        .expect("running paved")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_json_history(s: &Story, repo_arg: &str) {
    let out = paved(&["audit", ENV, "--repo", repo_arg, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["environment"], ENV);
    assert_eq!(v["repository"], repo_arg);
    let entries = v["entries"].as_array().unwrap();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["commit"].as_str().unwrap(), e["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (s.added.as_str(), "added"),
            (s.modified.as_str(), "modified"),
            (s.note_only.as_str(), "none"),
            (s.deleted.as_str(), "deleted"),
        ]
    );
    for absent in [&s.other_env, &s.unreachable] {
        assert!(!entries.iter().any(|e| e["commit"] == absent.as_str()));
    }
    let path = format!("environments/payments/{ENV}.yaml");
    for e in entries {
        assert_eq!(e["path"], path.as_str());
        assert_eq!(e["author"], "Paved Test");
        let date = e["date"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(date).is_ok(),
            "date {date}"
        );
        assert_eq!(e["records"].as_array().unwrap().len(), 1, "{e}");
    }
    assert_eq!(entries[0]["summary"], "Add checkout-preview (#101)");
    let records: Vec<AuditRecord> = entries
        .iter()
        .map(|e| serde_json::from_value(e["records"][0].clone()).unwrap())
        .collect();
    assert_eq!(
        records,
        vec![
            record(ENV, "deploy", "succeeded", 1),
            record(ENV, "deploy", "failed", 3),
            record(ENV, "deploy", "interrupted", 3),
            record(ENV, "delete", "succeeded", 4),
        ]
    );
}

#[test]
fn audit_cli_shows_an_environments_history_from_a_bare_path_and_a_url() {
    let s = story();
    check_json_history(&s, s.origin.bare_path().to_str().unwrap());
    check_json_history(&s, &s.origin.url());

    let out = paved(&["audit", ENV, "--repo", &s.origin.url()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let t = text(&out.stdout);
    for want in [
        "deploy succeeded",
        "deploy failed",
        "deploy interrupted",
        "delete succeeded",
        "added: environments/payments/checkout-preview.yaml",
        "deleted: environments/payments/checkout-preview.yaml",
        "approvers    admin1, admin2",
        "paved/schema=pass",
        s.added.as_str(),
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
    assert!(!t.contains(s.other_env.as_str()), "{t}");
    // Oldest first.
    assert!(t.find(s.added.as_str()) < t.find(s.deleted.as_str()));

    // The other environment has its own history.
    let out = paved(&[
        "audit",
        "search-dev",
        "--repo",
        s.origin.bare_path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["commit"], s.other_env.as_str());
    assert_eq!(v["entries"][0]["records"][0]["team"], "search");
}

#[test]
fn audit_cli_refuses_bad_names_and_reports_unknown_environments() {
    let s = story();
    let bare = s.origin.bare_path();
    let bare = bare.to_str().unwrap();
    for bad in ["../etc", "Checkout", "ab", "-abc", "a/b"] {
        let out = paved(&["audit", "--repo", bare, "--", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(err.contains("not a valid environment name"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = paved(&["audit", "nowhere-env", "--repo", bare]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no history for environment nowhere-env"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = paved(&["audit", ENV, "--repo", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn audit_cli_on_a_clone_without_notes_hints_how_to_fetch_them() {
    let s = story();
    let work = s.origin.tmp_path.join("work");
    git2::Repository::clone(&s.origin.url(), &work).unwrap();
    let out = paved(&[
        "audit",
        ENV,
        "--repo",
        work.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("git fetch origin refs/notes/paved:refs/notes/paved"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Commits only (the note-only commit needs the notes), records empty.
    let changes: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["added", "modified", "deleted"]);
    assert!(v["entries"][0]["records"].as_array().unwrap().is_empty());

    // After the fetch the hint gives, the records are there.
    let fetched = Command::new("git")
        .arg("-C")
        .arg(&work)
        .args(["fetch", "-q", "origin", "refs/notes/paved:refs/notes/paved"])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    let out = paved(&["audit", ENV, "--repo", work.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("hint"));
    assert!(text(&out.stdout).contains("delete succeeded"));
}

#[test]
fn git_itself_shows_the_note() {
    let s = story();
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(s.origin.bare_path())
        .args(["log", "--notes=paved", "-1", s.added.as_str()])
        .output()
        .expect("running git");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains("Notes (paved):"), "{log}");
    assert!(log.contains("Paved-Audit: v1"), "{log}");
    assert!(log.contains(&format!("Environment: {ENV}")), "{log}");
    assert!(log.contains("Outcome: succeeded"), "{log}");
    assert!(log.contains("Approvers: admin1, admin2"), "{log}");
}
