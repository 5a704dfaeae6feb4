//! Policy evaluation rate: manifests per second for the example policies, and the same
//! policies and inputs under OPA's own engine. Run with `cargo bench --bench policy`.
//!
//! Measures, single-threaded unless said otherwise, over generated manifests (2,000 by
//! default; `PAVED_BENCH_MANIFESTS=N` to change):
//! - `evaluate` end to end: read + parse + schema + policy + quota, from a directory;
//! - the policy check alone: built-in type rules + every Rego rule, from parsed manifests;
//! - Rego alone (JSON input and `data.paved` converted per evaluation), on 1 and 2 threads;
//! - Rego alone with input and data already converted.
//!
//! Then it writes the Rego inputs to a temp dir and runs `benches/opa_compare.py`, which
//! evaluates the same policies on the same inputs with OPA (Go, in-process through the
//! `opa-golib-python-bindings` PyPI package), compares every verdict and prints the ratio.
//! `PAVED_PYTHON` names the Python interpreter (default `python3`).

use paved::checks::{evaluate, Change, ChangeKind, Governance, PrContext};
use paved::manifest::{self, ParsedManifest};
use paved::policy::rego::PolicyData;
use paved::policy::{self, RegoOutcome};
use paved::tree::DirTree;
use std::path::Path;
use std::time::{Duration, Instant};

const EXTRA_TEAMS: usize = 10;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A manifest of kind `i % 20`: mostly valid, some denied, some warned about.
fn manifest(i: usize, team: &str) -> (String, String) {
    let name = format!("env-{i:05}");
    let expires = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    let (env_type, size, cost_center, expires) = match i % 20 {
        0..=2 => ("dev", "large", "cc-1234", Some(expires.to_string())), // denied: size
        3 | 4 => ("dev", "small", "finance", Some(expires.to_string())), // denied: tag format
        5 => ("prod", "large", "cc-9999", None),                         // warned: no expiresAt
        6 => ("dev", "large", "oops", Some(expires.to_string())),        // denied twice
        _ => ("dev", "small", "cc-4242", Some(expires.to_string())),     // valid
    };
    let expires = expires
        .map(|e| format!("  expiresAt: {e}\n"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: {name}\n  team: {team}\n  owner: octocat\nspec:\n  type: {env_type}\n  definition: postgres-db\n  parameters:\n    size: {size}\n{expires}  tags:\n    cost-center: {cost_center}\n"
    );
    (format!("environments/{team}/{name}.yaml"), text)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        let d = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, out));
        }
    }
    best.expect("at least one run")
}

struct Case {
    manifest: ParsedManifest,
    paved: serde_json::Value,
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("PAVED_BENCH_MANIFESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("repo");
    copy_dir(&examples, &root)?;
    std::fs::remove_dir_all(root.join("environments"))?;
    let platform_path = root.join(".paved/platform.yaml");
    let mut platform = std::fs::read_to_string(&platform_path)?;
    let mut teams = String::new();
    for t in 0..EXTRA_TEAMS {
        teams.push_str(&format!(
            "  team-{t:02}:\n    members: [octocat]\n    quota:\n      environments: 100000\n"
        ));
    }
    platform = platform.replacen("teams:\n", &format!("teams:\n{teams}"), 1);
    std::fs::write(&platform_path, platform)?;

    let mut changes = Vec::with_capacity(n);
    for i in 0..n {
        let team = format!("team-{:02}", i % EXTRA_TEAMS);
        let (path, text) = manifest(i, &team);
        let full = root.join(&path);
        std::fs::create_dir_all(full.parent().expect("parent"))?;
        std::fs::write(full, text)?;
        changes.push(Change {
            path,
            kind: ChangeKind::Added,
        });
    }
    let tree = DirTree::new(&root);
    let ctx = PrContext {
        author: "octocat".into(),
        approvers: Vec::new(),
        ..Default::default()
    };

    let (load, gov) = best(5, || Governance::load(&tree));
    let policies = gov.policies().clone();
    println!(
        "policy bench: {n} manifests, {} policy files, {} rules, engine {}; governance load + compile {:.2} ms",
        policies.files().len(),
        policies.rules().len(),
        policies.engine_name(),
        load.as_secs_f64() * 1e3
    );
    anyhow::ensure!(
        gov.all_errors().is_empty(),
        "governance errors: {:?}",
        gov.all_errors()
    );

    // 1. evaluate end to end
    let (d, report) = best(5, || evaluate(&gov, &tree, &tree, &changes, &ctx));
    let failing = report
        .environments
        .iter()
        .filter(|e| e.checks.iter().any(|c| !c.verdict.is_pass()))
        .count();
    println!(
        "  evaluate (read+parse+schema+policy+quota): {:>9.0} manifests/s  ({failing} of {n} fail a check)",
        rate(n, d)
    );

    // Parsed manifests and their data.paved, as the policy check builds them.
    let platform = gov.platform().expect("platform");
    let mut cases = Vec::with_capacity(n);
    for c in &changes {
        let text = manifest::read_text(&tree, &c.path)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .expect("file");
        let m = manifest::parse_manifest(&c.path, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let spec = &m.manifest.spec;
        let team_name = m.manifest.metadata.team.clone();
        let ty = &platform.environment_types[&spec.env_type];
        let team = &platform.teams[&team_name];
        let count = n / EXTRA_TEAMS;
        let paved =
            policy::paved_context(&spec.env_type, ty, &team_name, team, count, "octocat", &[]);
        cases.push(Case { manifest: m, paved });
    }

    // 2. the policy check: built-in type rules + Rego
    let now = chrono::Utc::now();
    let contexts: Vec<PolicyData> = cases
        .iter()
        .map(|c| PolicyData::new(&c.paved).expect("data"))
        .collect();
    let (d, denied) = best(5, || {
        let mut denied = 0;
        for (c, data) in cases.iter().zip(&contexts) {
            let spec = &c.manifest.manifest.spec;
            let ty = &platform.environment_types[&spec.env_type];
            let team = &platform.teams[&c.manifest.manifest.metadata.team];
            let (errs, _) =
                policy::policy_rules(&c.manifest, &spec.env_type, ty, team, "octocat", now);
            let out = policies
                .evaluate_prepared(&c.manifest.doc.json, data)
                .expect("eval");
            if !errs.is_empty() || !out.denials.is_empty() {
                denied += 1;
            }
        }
        denied
    });
    println!(
        "  policy check (built-in rules + Rego):       {:>9.0} manifests/s  ({denied} denied)",
        rate(n, d)
    );

    // 3. Rego alone: input converted per evaluation, data.paved once per context (team,
    //    type), as the checks do; then with data converted per evaluation too.
    let prepared: Vec<PolicyData> = cases
        .iter()
        .map(|c| PolicyData::new(&c.paved).expect("data"))
        .collect();
    let (d_rego, outcomes) = best(5, || {
        cases
            .iter()
            .zip(&prepared)
            .map(|(c, data)| {
                policies
                    .evaluate_prepared(&c.manifest.doc.json, data)
                    .expect("eval")
            })
            .collect::<Vec<RegoOutcome>>()
    });
    let rust_rate = rate(n, d_rego);
    println!("  Rego alone (JSON input, data per context):  {rust_rate:>9.0} manifests/s");

    let (d, _) = best(5, || {
        for c in &cases {
            policies
                .evaluate(&c.manifest.doc.json, &c.paved)
                .expect("eval");
        }
    });
    println!(
        "  Rego alone (JSON input + data per eval):    {:>9.0} manifests/s",
        rate(n, d)
    );

    let (d, _) = best(5, || {
        std::thread::scope(|s| {
            let chunk = n.div_ceil(2).max(1);
            for (half, data) in cases.chunks(chunk).zip(prepared.chunks(chunk)) {
                let policies = &policies;
                s.spawn(move || {
                    for (c, d) in half.iter().zip(data) {
                        policies
                            .evaluate_prepared(&c.manifest.doc.json, d)
                            .expect("eval");
                    }
                });
            }
        })
    });
    println!(
        "  Rego alone, 2 threads sharing one policy set: {:>7.0} manifests/s",
        rate(n, d)
    );

    // 4. Rego alone, values converted beforehand
    let values: Vec<_> = cases
        .iter()
        .map(|c| policy::rego::to_values(&c.manifest.doc.json, &c.paved).expect("values"))
        .collect();
    let (d, _) = best(5, || {
        for (input, data) in &values {
            policies
                .evaluate_values(input.clone(), data.clone())
                .expect("eval");
        }
    });
    let eval_only_rate = rate(n, d);
    println!("  Rego alone (input/data pre-converted):      {eval_only_rate:>9.0} manifests/s");

    compare_with_opa(
        tmp.path(),
        &gov,
        &cases,
        &outcomes,
        rust_rate,
        eval_only_rate,
    )?;
    Ok(())
}

fn verdict_of(o: &RegoOutcome) -> serde_json::Value {
    let mut deny: Vec<&str> = o.denials.iter().map(|f| f.message.as_str()).collect();
    let mut warn: Vec<&str> = o.warnings.iter().map(|f| f.message.as_str()).collect();
    deny.sort();
    warn.sort();
    serde_json::json!({"deny": deny, "warn": warn})
}

fn compare_with_opa(
    dir: &Path,
    gov: &Governance,
    cases: &[Case],
    outcomes: &[RegoOutcome],
    rust_rate: f64,
    eval_only_rate: f64,
) -> anyhow::Result<()> {
    let policies = gov.policies();
    let mut sources = Vec::new();
    for p in policies.files() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(p),
        )?;
        sources.push(serde_json::json!({"path": p, "text": text}));
    }
    let rules: Vec<serde_json::Value> = policies
        .rules()
        .iter()
        .map(|r| {
            serde_json::json!({
                "path": r.path,
                "kind": match r.kind { policy::rego::RuleKind::Deny => "deny", policy::rego::RuleKind::Warn => "warn" },
            })
        })
        .collect();
    let case_json: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| serde_json::json!({"input": c.manifest.doc.json, "data": {"paved": c.paved}}))
        .collect();
    let spec = serde_json::json!({"policies": sources, "rules": rules, "cases": case_json});
    std::fs::write(dir.join("cases.json"), serde_json::to_vec(&spec)?)?;
    println!(
        "  inputs for OPA written to {}",
        dir.join("cases.json").display()
    );

    let python = std::env::var("PAVED_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/opa_compare.py");
    let out = match std::process::Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("OPA comparison skipped: cannot run {python}: {e}");
            return Ok(());
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let summary: serde_json::Value = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    if !out.status.success() || summary.get("rate").is_none() {
        println!(
            "OPA comparison skipped: {} ({}). Install OPA's Go engine for Python with `pip install --ignore-requires-python opa-golib-python-bindings`.",
            summary.get("error").and_then(|e| e.as_str()).unwrap_or("the OPA script failed"),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
        );
        return Ok(());
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("opa_results.json"))?)?;
    let opa_verdicts = results["verdicts"].as_array().cloned().unwrap_or_default();
    let mut mismatches = 0;
    for (i, (ours, theirs)) in outcomes.iter().zip(&opa_verdicts).enumerate() {
        let ours = verdict_of(ours);
        if &ours != theirs {
            mismatches += 1;
            if mismatches <= 3 {
                println!("  verdict mismatch on case {i}: regorus {ours} vs OPA {theirs}");
            }
        }
    }
    let opa_rate = summary["rate"].as_f64().unwrap_or(0.0);
    let opa_pure = summary["rate_without_binding_overhead"].as_f64();
    println!(
        "  OPA (Go engine via opa-golib-python-bindings, {} engines): {opa_rate:.0} manifests/s; without the binding's JSON round trip: {}",
        summary["engines"],
        opa_pure.map(|r| format!("{r:.0} manifests/s")).unwrap_or_else(|| "n/a".into())
    );
    println!(
        "  verdicts: {} of {} identical{}",
        opa_verdicts.len() - mismatches,
        opa_verdicts.len(),
        if mismatches == 0 && opa_verdicts.len() == outcomes.len() {
            ""
        } else {
            "  <-- MISMATCH"
        }
    );
    println!(
        "  ratio, JSON input both sides (regorus {:.0}/s vs OPA through the binding): {:.1}x",
        rust_rate,
        rust_rate / opa_rate
    );
    if let Some(p) = opa_pure {
        println!(
            "  ratio, evaluation only (regorus, input pre-converted {:.0}/s vs OPA minus all input handling {p:.0}/s): {:.1}x",
            eval_only_rate,
            eval_only_rate / p
        );
        println!(
            "  ratio, conservative (regorus with JSON input vs OPA minus all input handling): {:.1}x",
            rust_rate / p
        );
    }
    anyhow::ensure!(
        mismatches == 0 && opa_verdicts.len() == outcomes.len(),
        "regorus and OPA disagree"
    );
    Ok(())
}
