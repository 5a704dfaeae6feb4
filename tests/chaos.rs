//! Crash safety under fire (issue 20): real `paved serve` processes provisioning merges
//! while they are killed with SIGKILL, at random moments and at the worst ones, and started
//! again. The worst moments are the fault points of `paved::chaos` (debug builds only):
//! the test names a point in the victim's chaos file (`PAVED_CHAOS`), the replica stops
//! itself when it gets there, and the test kills it:
//! - `result-write`: the script has ended, its result is not recorded;
//! - `deployment`: GitHub made the deployment, its id is not recorded;
//! - `note-push`: the audit note's commit is made in the mirror, not pushed.
//!
//! Between kills the test also leaves what a writer killed mid-write leaves: ref locks in
//! the dead replica's mirror (cleared at its start), one in a running replica's mirror
//! (cleared before the retry of what it broke), and once a stale `refs/notes/paved.lock`
//! in the origin (cleared before the next push of the notes).
//!
//! Then: every merge has a final `paved/provision`, success; every environment is `ready`
//! with its outputs; no operation took more than 3 attempts; no environment ran twice at
//! once; every audit note lands on the origin, each record once; no lock is left.
//!
//! Two replicas on PostgreSQL (when `PAVED_TEST_DATABASE_URL` is set, as `script/test` sets
//! it), and one replica on SQLite. The sizes: `PAVED_CHAOS_MERGES` (default 16) and
//! `PAVED_CHAOS_KILLS` (default 6); each run prints its recovery time, from the last kill
//! to every merge final:
//! `PAVED_CHAOS_MERGES=30 PAVED_CHAOS_KILLS=12 cargo test --test chaos -- --nocapture`.

/// This binary's harnesses use SQLite; the PostgreSQL test makes its own database.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::recorder::{governance_files, recorder_manifest};
use common::serve::{spawn_serve, Paved};
use common::Harness;
use paved::ids::CommitSha;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The fault points a kill may wait for; `None`: a random moment.
const POINTS: [Option<&str>; 4] = [
    Some("result-write"),
    None,
    Some("deployment"),
    Some("note-push"),
];
/// Locks left in a mirror by a writer killed mid-write.
const MIRROR_LOCKS: [&str; 3] = [
    "refs/notes/paved.lock",
    "refs/remotes/origin/main.lock",
    "packed-refs.lock",
];
/// The lease the replicas run with: a dead replica's work is taken over after it.
const LEASE: &str = "2s";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Replica {
    name: String,
    process: Option<Paved>,
    url: String,
    /// The log's length when this start began: "stopped at" is looked for after it.
    log_from: u64,
}

struct Chaos {
    h: Harness,
    database: String,
    records: PathBuf,
    record_url: String,
    replicas: Vec<Replica>,
}

impl Chaos {
    fn log_path(&self, i: usize) -> PathBuf {
        self.h
            .tmp
            .path()
            .join(format!("{}.log", self.replicas[i].name))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.h.tmp.path().join(&self.replicas[i].name)
    }

    /// Replica `i`'s chaos file: the fault points it stops at.
    fn chaos_file(&self, i: usize) -> PathBuf {
        self.h
            .tmp
            .path()
            .join(format!("{}.chaos", self.replicas[i].name))
    }

    /// Starts replica `i` (with no fault point armed).
    async fn start(&mut self, i: usize) {
        let _ = std::fs::remove_file(self.chaos_file(i));
        let env = vec![
            ("PAVED_LEASE", LEASE.to_string()),
            ("RECORD_URL", self.record_url.clone()),
            ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
            ("PAVED_CHAOS", self.chaos_file(i).display().to_string()),
        ];
        let log_from = std::fs::metadata(self.log_path(i)).map_or(0, |m| m.len());
        let (process, url) = spawn_serve(
            &self.h,
            &self.data_dir(i),
            &self.database,
            &self.h.github.url(),
            &env,
        )
        .await;
        let r = &mut self.replicas[i];
        r.process = Some(process);
        r.url = url;
        r.log_from = log_from;
    }

    /// Whether replica `i` has stopped itself at a fault point since its start.
    fn stopped_at_point(&self, i: usize) -> bool {
        let log = std::fs::read(self.log_path(i)).unwrap_or_default();
        let from = usize::try_from(self.replicas[i].log_from).unwrap_or(0);
        log.get(from..)
            .is_some_and(|l| String::from_utf8_lossy(l).contains("paved chaos: stopped at"))
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.replicas[i].process.take() {
            p.0.kill().expect("SIGKILL");
            p.0.wait().expect("reap");
        }
    }

    /// Makes merge `k` and delivers it to a live replica (stored before its 202).
    async fn send_merge(&mut self, k: usize) -> (String, CommitSha) {
        let (name, sha, body) = merge(&self.h, k);
        let id = self.h.delivery_id();
        self.h.external_url = Some(self.live_url());
        assert_eq!(
            self.h.send("pull_request", &id, &body).await,
            reqwest::StatusCode::ACCEPTED
        );
        (name, sha)
    }

    /// A live replica's URL.
    fn live_url(&self) -> String {
        self.replicas
            .iter()
            .find(|r| r.process.is_some())
            .map(|r| r.url.clone())
            .expect("a replica runs")
    }
}

/// Merge `k`: a pull request adding environment `chaos-<k>`, merged on the remote.
fn merge(h: &Harness, k: usize) -> (String, CommitSha, Vec<u8>) {
    let name = format!("chaos-{k:02}");
    let manifest = recorder_manifest(&name, "dev", "slow", "");
    let number = 500 + k as u64;
    let pr = h.push_pr(
        number,
        None,
        &[(
            format!("environments/payments/{name}.yaml"),
            Some(manifest.into_bytes()),
        )],
    );
    h.github.set_pull_reviews(
        common::REPO,
        number,
        vec![
            serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                "commit_id": pr.head_sha.as_str()}),
        ],
    );
    let sha = h.remote.merge_pull(&pr).expect("merge");
    let body = paved_testkit::merged_payload(&pr, &sha, "hubot").expect("payload");
    (name, sha, body)
}

/// Whether every merge commit in `shas` has a final `paved/provision`.
fn all_final(gh: &github_emulator::EmulatorHandle, shas: &[String]) -> bool {
    shas.iter().all(|sha| {
        gh.latest_statuses(common::REPO, sha)
            .get("paved/provision")
            .is_some_and(|s| s.state != "pending")
    })
}

/// Leaves the lock a writer killed in the middle of a ref update leaves, `age` old.
fn plant_lock(path: &Path, age: Duration) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    let f = std::fs::File::create(path).expect("lock");
    f.set_modified(SystemTime::now() - age).expect("mtime");
}

/// `database`: PostgreSQL's URL, else a SQLite file of the test's.
async fn run_chaos(replicas: usize, database: Option<String>, label: &str) {
    let merges = knob("PAVED_CHAOS_MERGES", 16);
    let kills = knob("PAVED_CHAOS_KILLS", 6).max(1);
    // Room in the team's quota for every environment here.
    let mut files = governance_files();
    files[0].1 = files[0].1.as_ref().map(|b| {
        String::from_utf8_lossy(b)
            .replace("environments: 5", "environments: 500")
            .into_bytes()
    });
    let h = Harness::prepare(&files).await;
    let records = h.tmp.path().join("records");
    std::fs::create_dir_all(&records).expect("records");
    let record_url = common::records::serve(&records).await;
    let database = database
        .unwrap_or_else(|| format!("sqlite://{}", h.tmp.path().join("paved.sqlite").display()));
    let mut c = Chaos {
        h,
        database,
        records,
        record_url,
        replicas: (0..replicas)
            .map(|i| Replica {
                name: format!("replica-{i}"),
                process: None,
                url: String::new(),
                log_from: 0,
            })
            .collect(),
    };
    // Kill `k` is of replica `k % replicas`, at POINTS[k % 4].
    let plan: Vec<(usize, Option<&str>)> = (0..kills)
        .map(|k| (k % replicas, POINTS[k % POINTS.len()]))
        .collect();
    for i in 0..replicas {
        c.start(i).await;
    }

    let mut sent: Vec<(String, CommitSha)> = Vec::new();
    let origin_lock = c.h.remote.path().join("refs/notes/paved.lock");
    let mut last_kill = Instant::now();
    // Merges sent before the last kill and before the one before it.
    let (mut before_last, mut before_previous) = (0, 0);
    for (k, (victim, point)) in plan.iter().enumerate() {
        // Kills are paced so that no merge meets more than two of them: one that meets a
        // third gives up after its third attempt, as documented (MAX_OP_ATTEMPTS), and
        // that is not what this test is about. So the merges sent before the kill before
        // last are final before the next kill.
        let settled: Vec<String> = sent[..before_previous]
            .iter()
            .map(|(_, s)| s.to_string())
            .collect();
        c.h.github
            .wait_until(
                Duration::from_secs(120),
                "earlier merges final",
                move |gh| all_final(gh, &settled),
            )
            .await
            .expect("the merges before the kill before last are final");
        // A batch of merges (the k-th share of them, so that every kill meets work),
        // delivered to a live replica (stored before its 202).
        while sent.len() < merges * (k + 1) / kills {
            sent.push(c.send_merge(sent.len()).await);
        }
        // The kill: where the replica stopped itself, or at a random moment.
        match point {
            Some(p) => {
                std::fs::write(c.chaos_file(*victim), format!("{p}\n")).expect("arm");
                let start = Instant::now();
                while !c.stopped_at_point(*victim) && start.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => {
                let after = Duration::from_millis(rand::random::<u64>() % 1500);
                tokio::time::sleep(after).await;
            }
        }
        let _ = std::fs::remove_file(c.chaos_file(*victim));
        let stopped = c.stopped_at_point(*victim);
        c.kill(*victim);
        last_kill = Instant::now();
        (before_previous, before_last) = (before_last, sent.len());
        eprintln!(
            "{label}: kill {k} of replica-{victim} {}",
            match (point, stopped) {
                (Some(p), true) => format!("at {p}"),
                (Some(p), false) => format!("(never reached {p}: at random)"),
                (None, _) => "at a random moment".to_string(),
            }
        );
        // What a writer killed mid-write leaves behind: ref locks in its mirror (its next
        // fetch of the default branch, and its next note, would fail on them).
        let mirror = c.data_dir(*victim).join("mirrors/acme/environments.git");
        for lock in MIRROR_LOCKS {
            plant_lock(&mirror.join(lock), Duration::ZERO);
        }
        if k == plan.len() / 2 {
            plant_lock(&origin_lock, Duration::from_secs(60));
        }
        c.start(*victim).await;
        // And one in a running replica's mirror (as a write of its own that failed half
        // way leaves): its next fetch fails, and the retry must find the mirror cleared.
        let running = c
            .data_dir((victim + 1) % replicas)
            .join("mirrors/acme/environments.git");
        plant_lock(&running.join(MIRROR_LOCKS[1]), Duration::ZERO);
    }
    // The rest of the merges, if the batches did not take them all.
    while sent.len() < merges {
        sent.push(c.send_merge(sent.len()).await);
    }

    // Every merge's `paved/provision` becomes final.
    let shas: Vec<String> = sent.iter().map(|(_, s)| s.to_string()).collect();
    let waited =
        c.h.github
            .wait_until(Duration::from_secs(180), "every paved/provision final", {
                let shas = shas.clone();
                move |gh| all_final(gh, &shas)
            })
            .await;
    if waited.is_err() {
        for i in 0..replicas {
            let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("---- replica-{i} ----\n{tail}");
        }
        panic!("{label}: not every merge got a final paved/provision");
    }
    let recovery = last_kill.elapsed();
    eprintln!(
        "{label}: {merges} merges, {kills} kills, lease {LEASE}: every merge final {:.1} s after the last kill",
        recovery.as_secs_f64()
    );

    for (name, sha) in &sent {
        let s = &c.h.github.latest_statuses(common::REPO, sha.as_str())["paved/provision"];
        assert_eq!(s.state, "success", "{label}: {name}: {s:?}");
    }
    // Every environment is ready with its outputs; no operation took more than 3 attempts.
    let url = c.live_url();
    for (name, sha) in &sent {
        let env: serde_json::Value =
            c.h.client
                .get(format!(
                    "{url}/api/v1/repos/{}/environments/{name}",
                    common::REPO
                ))
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
        assert_eq!(env["environment"]["state"], "ready", "{label}: {env}");
        assert_eq!(
            env["environment"]["outputs"]["url"]["value"],
            format!("https://{name}.example.test"),
            "{label}: {env}"
        );
        let ops: serde_json::Value =
            c.h.client
                .get(format!("{url}/api/v1/repos/{}/merges/{sha}", common::REPO))
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
        let attempts: Vec<i64> = ops
            .as_array()
            .expect("operations")
            .iter()
            .map(|o| o["attempt"].as_i64().unwrap_or(0))
            .collect();
        assert!(
            !attempts.is_empty() && attempts.iter().all(|a| (1..=3).contains(a)),
            "{label}: {name}: attempts {attempts:?}"
        );
    }
    no_environment_ran_twice_at_once(&c.records, label);

    // Every note lands on the origin, each record once; no lock is left.
    let origin = git2::Repository::open_bare(c.h.remote.path()).expect("origin");
    let note_of = |sha: &CommitSha| {
        let oid = git2::Oid::from_str(sha.as_str()).expect("oid");
        origin
            .find_note(Some("refs/notes/paved"), oid)
            .map(|n| n.message().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    for (name, sha) in &sent {
        let what = format!("{label}: {name}'s note landed");
        let (note, records) =
            common::eventually_within(Duration::from_secs(120), what, async || {
                let note = note_of(sha);
                let records = paved::audit::parse(&note);
                records
                    .iter()
                    .any(|r| &r.environment == name && r.outcome == "succeeded")
                    .then_some((note, records))
            })
            .await;
        let mut seen = BTreeSet::new();
        for r in &records {
            assert!(
                seen.insert((r.run_id, r.attempt, r.outcome.clone())),
                "{label}: a record twice in {name}'s note: {note}"
            );
        }
    }
    let what = format!("{label}: the outbox empty");
    common::eventually(what, async || {
        let pending = common::metric(&c.h.client, &url, "paved_notes_pending").await;
        (pending == Some(0.0)).then_some(())
    })
    .await;
    assert!(!origin_lock.exists(), "{label}: the origin's lock stayed");
    for i in 0..replicas {
        c.kill(i);
    }
}

/// The recorder's runs of each environment, as (start, end) in ns: no two overlap. A run
/// without an end was killed with its replica.
fn no_environment_ran_twice_at_once(records: &Path, label: &str) {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let mut by_env: BTreeMap<String, Vec<(u128, Option<u128>, String)>> = BTreeMap::new();
    for e in std::fs::read_dir(records).expect("records").flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(run) = file.strip_suffix(".env") else {
            continue;
        };
        let env = read(e.path()).unwrap_or_default();
        let name = env
            .lines()
            .find_map(|l| l.strip_prefix("ADE_ENVIRONMENT_NAME="))
            .unwrap_or_default()
            .to_string();
        let time = |ext: &str| {
            read(records.join(format!("{run}.{ext}"))).and_then(|s| s.trim().parse::<u128>().ok())
        };
        if let Some(start) = time("start") {
            by_env
                .entry(name)
                .or_default()
                .push((start, time("end"), run.to_string()));
        }
    }
    for (env, mut runs) in by_env {
        runs.sort();
        for pair in runs.windows(2) {
            let (first, second) = (&pair[0], &pair[1]);
            if let Some(end) = first.1 {
                assert!(
                    end <= second.0,
                    "{label}: {env}: runs {} and {} overlapped",
                    first.2,
                    second.2
                );
            }
        }
    }
}

#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_killed_at_random_and_at_the_worst_moments() {
    let server = common::postgres_server()
        .expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let db = common::TestDatabase::create(&server).await;
    run_chaos(2, Some(db.url.clone()), "postgresql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_on_sqlite_killed_and_restarted() {
    // Its own file in its own data folder, as `paved serve` makes by default.
    run_chaos(1, None, "sqlite").await;
}
