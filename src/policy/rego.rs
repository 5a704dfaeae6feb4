//! Rego policies from `.paved/policies/*.rego`, with conftest's conventions.
//!
//! - The input is the manifest document itself (as JSON), so
//!   `conftest test environments/ -p .paved/policies --all-namespaces` gives the same verdicts.
//! - Rules named `deny`, `violation` (failures) and `warn` (reported only), or with those
//!   prefixes followed by `_name` (`deny_large_db`), are evaluated in **every package**
//!   (like conftest's `--all-namespaces`); `package main` is conftest's default and what the
//!   examples use.
//! - A rule's value may be a set of strings (`deny contains msg if {...}`), a set of objects
//!   with a `msg` field (`violation contains {"msg": msg} if {...}`), or `true` (a boolean
//!   rule); anything else is reported as its JSON text.
//! - Policies are Rego v1 (OPA 1.x syntax). Paved's context is under `data.paved`
//!   (see [`super::paved_context`]); a package named `paved` or below would clash with it.
//! - Builtin errors make the expression undefined, as in OPA and conftest by default. A
//!   policy that fails to parse, to compile, or to evaluate (an evaluation error, a time
//!   or instruction limit) fails the check with that error: it never passes silently.
//!
//! Performance: the policy set is parsed and compiled once per governance load into an RVM
//! program (`Arc`, `Send + Sync`); each evaluation takes a VM from a small pool, sets
//! `input` and `data` and runs the entry points. Should the RVM compiler reject a policy,
//! the set falls back to cloning a prepared interpreter per evaluation (slower, same results).

use crate::diag::Diagnostic;
use crate::tree::TreeReader;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Folder of the repository's policies.
pub const POLICIES_DIR: &str = ".paved/policies";

/// Most RVM instructions one evaluation may run.
const MAX_INSTRUCTIONS: usize = 10_000_000;
/// Longest one evaluation may take.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// Most idle VMs kept for reuse.
const POOL_SIZE: usize = 16;

/// Failures (`deny`, `violation`) or warnings (`warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Deny,
    Warn,
}

/// A rule the policy set evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRule {
    /// Full rule path, e.g. `data.main.deny`.
    pub path: String,
    pub kind: RuleKind,
}

/// One message produced by a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The rule without `data.`, e.g. `main.deny`.
    pub rule: String,
    pub message: String,
}

/// What the policies said about one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegoOutcome {
    pub denials: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

enum Evaluator {
    /// No policy files, or no deny/violation/warn rules: nothing to evaluate.
    Empty,
    Rvm(Arc<Program>),
    Interpreter(Box<Engine>),
}

/// The compiled policies of one base commit. `Send + Sync`; share it with `Arc`.
pub struct RegoPolicies {
    files: Vec<String>,
    errors: Vec<Diagnostic>,
    rules: Vec<EntryRule>,
    evaluator: Evaluator,
    pool: Mutex<Vec<RegoVM>>,
}

impl std::fmt::Debug for RegoPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicies")
            .field("files", &self.files)
            .field("errors", &self.errors)
            .field("rules", &self.rules)
            .field(
                "evaluator",
                &match self.evaluator {
                    Evaluator::Empty => "empty",
                    Evaluator::Rvm(_) => "rvm",
                    Evaluator::Interpreter(_) => "interpreter",
                },
            )
            .finish()
    }
}

/// Whether a rule name is one conftest evaluates, and as what.
fn rule_kind(name: &str) -> Option<RuleKind> {
    let (head, rest) = match name.split_once('_') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    if rest
        .is_some_and(|r| r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return None;
    }
    match head {
        "deny" | "violation" => Some(RuleKind::Deny),
        "warn" => Some(RuleKind::Warn),
        _ => None,
    }
}

/// `path:line:col` from a regorus error, whose text holds `--> path:line:col`.
fn error_diag(file: &str, err: &anyhow::Error) -> Diagnostic {
    let text = format!("{err:#}");
    let mut d = Diagnostic::new(file, "");
    let mut message_lines = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(loc) = t.strip_prefix("--> ") {
            let mut parts = loc.rsplitn(3, ':');
            let col = parts.next().and_then(|c| c.parse().ok());
            let row = parts.next().and_then(|r| r.parse().ok());
            if let (Some(row), Some(col)) = (row, col) {
                d = d.at(row, col);
            }
        } else if let Some(msg) = t.strip_prefix("error: ") {
            message_lines.push(msg.to_string());
        }
    }
    d.message = if message_lines.is_empty() {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        message_lines.join("; ")
    };
    d.message = format!("policy error: {}", d.message);
    d
}

impl RegoPolicies {
    /// Read and compile every `.rego` file under `.paved/policies/` of `base` (subfolders
    /// included, like conftest).
    pub fn load(base: &dyn TreeReader) -> Self {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        let mut dirs = vec![POLICIES_DIR.to_string()];
        let mut visited = 0usize;
        while let Some(dir) = dirs.pop() {
            visited += 1;
            if visited > 1000 {
                errors.push(Diagnostic::new(POLICIES_DIR, "too many policy folders"));
                break;
            }
            let entries = match base.list(&dir) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(Diagnostic::new(&dir, format!("cannot list policies: {e}")));
                    continue;
                }
            };
            for entry in entries {
                let path = format!("{dir}/{entry}");
                if entry.starts_with('.') {
                    continue;
                }
                if entry.ends_with(".rego") {
                    // conftest skips test files
                    if entry.ends_with("_test.rego") {
                        continue;
                    }
                    match crate::manifest::read_text(base, &path) {
                        Ok(Some(text)) => sources.push((path, text)),
                        Ok(None) => {}
                        Err(d) => errors.push(d),
                    }
                } else if base.is_dir(&path).unwrap_or(false) {
                    dirs.push(path);
                }
            }
        }
        sources.sort();
        let mut set = Self::from_sources(&sources);
        errors.append(&mut set.errors);
        set.errors = errors;
        set
    }

    /// Compile policies given as `(path, text)`.
    pub fn from_sources(sources: &[(String, String)]) -> Self {
        let mut errors = Vec::new();
        let files: Vec<String> = sources.iter().map(|(p, _)| p.clone()).collect();
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(false);
        for (path, text) in sources {
            if let Err(e) = engine.add_policy(path.clone(), text.clone()) {
                errors.push(error_diag(path, &e));
            }
        }
        let empty = |errors| RegoPolicies {
            files: files.clone(),
            errors,
            rules: Vec::new(),
            evaluator: Evaluator::Empty,
            pool: Mutex::new(Vec::new()),
        };
        if !errors.is_empty() || sources.is_empty() {
            return empty(errors);
        }
        // A probe rule every policy set has, to compile and list the rules.
        const PROBE_FILE: &str = "<paved>";
        const PROBE: &str = "data.__paved_probe.ok";
        if let Err(e) = engine.add_policy(
            PROBE_FILE.into(),
            "package __paved_probe\n\nok := true\n".into(),
        ) {
            return empty(vec![error_diag(PROBE_FILE, &e)]);
        }
        let compiled = match engine.compile_with_entrypoint(&PROBE.into()) {
            Ok(c) => c,
            Err(e) => return empty(vec![error_diag(POLICIES_DIR, &e)]),
        };
        let mut rules: Vec<EntryRule> = compiled
            .get_rules()
            .keys()
            .filter_map(|path| {
                let name = path.rsplit('.').next()?;
                let kind = rule_kind(name)?;
                Some(EntryRule {
                    path: path.clone(),
                    kind,
                })
            })
            .collect();
        rules.sort_by(|a, b| a.path.cmp(&b.path));
        rules.dedup();
        if rules.is_empty() {
            return RegoPolicies {
                files,
                errors,
                rules,
                evaluator: Evaluator::Empty,
                pool: Mutex::new(Vec::new()),
            };
        }
        let entry_points: Vec<&str> = rules.iter().map(|r| r.path.as_str()).collect();
        let evaluator = match Compiler::compile_from_policy(&compiled, &entry_points) {
            Ok(program) => Evaluator::Rvm(program),
            Err(e) => {
                tracing::info!(error = %e, "RVM cannot compile the policies; using the interpreter");
                Evaluator::Interpreter(Box::new(engine))
            }
        };
        RegoPolicies {
            files,
            errors,
            rules,
            evaluator,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Policy files found.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Errors reading or compiling the policies; when not empty, every policy check fails.
    pub fn errors(&self) -> &[Diagnostic] {
        &self.errors
    }

    /// The rules evaluated, sorted by path.
    pub fn rules(&self) -> &[EntryRule] {
        &self.rules
    }

    /// Which engine runs the policies: `rvm`, `interpreter` or `none`.
    pub fn engine_name(&self) -> &'static str {
        match self.evaluator {
            Evaluator::Empty => "none",
            Evaluator::Rvm(_) => "rvm",
            Evaluator::Interpreter(_) => "interpreter",
        }
    }

    /// Evaluate every rule with this input and `data.paved`. `Err` carries the evaluation
    /// error (the check must fail with it).
    pub fn evaluate(
        &self,
        input: &serde_json::Value,
        paved: &serde_json::Value,
    ) -> Result<RegoOutcome, String> {
        self.evaluate_prepared(input, &PolicyData::new(paved)?)
    }

    /// [`RegoPolicies::evaluate`] with `data` converted once, for the many manifests that
    /// share a context (same type, team and pull request).
    pub fn evaluate_prepared(
        &self,
        input: &serde_json::Value,
        data: &PolicyData,
    ) -> Result<RegoOutcome, String> {
        if !self.errors.is_empty() {
            return Err("the policies failed to load".into());
        }
        if matches!(self.evaluator, Evaluator::Empty) {
            return Ok(RegoOutcome::default());
        }
        self.evaluate_values(to_rego(input), data.0.clone())
    }

    /// Evaluate with input and data already converted.
    pub fn evaluate_values(&self, input: Value, data: Value) -> Result<RegoOutcome, String> {
        match &self.evaluator {
            Evaluator::Empty => Ok(RegoOutcome::default()),
            Evaluator::Rvm(program) => self.run_rvm(program, input, data),
            Evaluator::Interpreter(engine) => self.run_interpreter(engine, input, data),
        }
    }

    fn run_rvm(
        &self,
        program: &Arc<Program>,
        input: Value,
        data: Value,
    ) -> Result<RegoOutcome, String> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                vm.set_max_instructions(MAX_INSTRUCTIONS);
                vm.set_strict_builtin_errors(false);
                vm.set_execution_timer_config(Some(ExecutionTimerConfig {
                    limit: TIME_LIMIT,
                    check_interval: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
                }));
                vm
            }
        };
        let result = (|| {
            vm.set_data(data).map_err(|e| format!("policy data: {e}"))?;
            vm.set_input(input);
            let mut out = RegoOutcome::default();
            for rule in &self.rules {
                let v = vm
                    .execute_entry_point_by_name(&rule.path)
                    .map_err(|e| format!("evaluating {}: {e}", rule.path))?;
                collect(rule, &v, &mut out);
            }
            Ok(out)
        })();
        if result.is_ok() {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_SIZE {
                pool.push(vm);
            }
        }
        result.map(sorted)
    }

    fn run_interpreter(
        &self,
        engine: &Engine,
        input: Value,
        data: Value,
    ) -> Result<RegoOutcome, String> {
        let mut engine = engine.clone();
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: TIME_LIMIT,
            check_interval: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
        });
        engine
            .add_data(data)
            .map_err(|e| format!("policy data: {e}"))?;
        engine.set_input(input);
        let mut out = RegoOutcome::default();
        for rule in &self.rules {
            let v = engine
                .eval_rule(rule.path.clone())
                .map_err(|e| format!("evaluating {}: {e}", rule.path))?;
            collect(rule, &v, &mut out);
        }
        Ok(sorted(out))
    }
}

/// The `data` document (`{"paved": ...}`) converted for evaluation.
#[derive(Debug, Clone)]
pub struct PolicyData(Value);

impl PolicyData {
    /// `paved` is Paved's context, see [`super::paved_context`].
    pub fn new(paved: &serde_json::Value) -> Result<Self, String> {
        let paved = to_rego(paved);
        let mut data = Value::new_object();
        data.as_object_mut()
            .map_err(|e| format!("policy data: {e}"))?
            .insert(Value::from("paved"), paved);
        Ok(PolicyData(data))
    }

    pub fn value(&self) -> &Value {
        &self.0
    }
}

/// The Rego input and data documents for one evaluation.
pub fn to_values(
    input: &serde_json::Value,
    paved: &serde_json::Value,
) -> Result<(Value, Value), String> {
    Ok((to_rego(input), PolicyData::new(paved)?.0))
}

/// Convert a JSON value for Rego (about 20% faster than going through serde).
pub fn to_rego(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(to_rego).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            let mut m = std::collections::BTreeMap::new();
            for (k, v) in o {
                m.insert(Value::from(k.as_str()), to_rego(v));
            }
            Value::from(m)
        }
    }
}

fn sorted(mut out: RegoOutcome) -> RegoOutcome {
    out.denials.sort();
    out.warnings.sort();
    out
}

fn collect(rule: &EntryRule, v: &Value, out: &mut RegoOutcome) {
    let name = rule
        .path
        .strip_prefix("data.")
        .unwrap_or(&rule.path)
        .to_string();
    let target = match rule.kind {
        RuleKind::Deny => &mut out.denials,
        RuleKind::Warn => &mut out.warnings,
    };
    let mut push = |message: String| {
        target.push(Finding {
            rule: name.clone(),
            message,
        })
    };
    match v {
        Value::Undefined | Value::Null => {}
        Value::Bool(false) => {}
        Value::Bool(true) => push(format!("{name} is true")),
        Value::Set(items) => items.iter().for_each(|i| push(message_of(i))),
        Value::Array(items) => items.iter().for_each(|i| push(message_of(i))),
        other => push(message_of(other)),
    }
}

fn message_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Object(o) => match o.get(&Value::from("msg")) {
            Some(Value::String(s)) => s.to_string(),
            _ => v
                .to_json_str()
                .unwrap_or_else(|_| "(unprintable message)".into()),
        },
        other => other
            .to_json_str()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "(unprintable message)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn set(sources: &[(&str, &str)]) -> RegoPolicies {
        let s: Vec<(String, String)> = sources
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        RegoPolicies::from_sources(&s)
    }

    #[test]
    fn rule_names_follow_conftest() {
        assert_eq!(rule_kind("deny"), Some(RuleKind::Deny));
        assert_eq!(rule_kind("violation_large"), Some(RuleKind::Deny));
        assert_eq!(rule_kind("warn_x_y"), Some(RuleKind::Warn));
        assert_eq!(rule_kind("denied"), None);
        assert_eq!(rule_kind("allow"), None);
        assert_eq!(rule_kind("deny_"), None);
    }

    #[test]
    fn sets_objects_and_booleans_in_every_package() {
        let p = set(&[
            ("a.rego", "package main\n\ndeny contains msg if {\n  input.size == \"large\"\n  msg := \"too large\"\n}\n\nwarn contains \"just saying\" if true\n"),
            ("b.rego", "package team.rules\n\nviolation contains {\"msg\": m} if {\n  not input.owner in data.paved.team.members\n  m := sprintf(\"%s is not a member\", [input.owner])\n}\n\ndeny_flag if input.flag\n"),
        ]);
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        assert_eq!(p.engine_name(), "rvm");
        let out = p
            .evaluate(
                &json!({"size": "large", "owner": "bob", "flag": true}),
                &json!({"team": {"members": ["alice"]}}),
            )
            .expect("eval");
        let msgs: Vec<&str> = out.denials.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "too large",
                "team.rules.deny_flag is true",
                "bob is not a member"
            ]
        );
        assert_eq!(out.warnings.len(), 1);
        let out = p
            .evaluate(
                &json!({"size": "small", "owner": "alice"}),
                &json!({"team": {"members": ["alice"]}}),
            )
            .expect("eval");
        assert!(out.denials.is_empty(), "{out:?}");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let p = set(&[(
            "bad.rego",
            "package main\n\ndeny contains msg if {\n  input.x ==\n}\n",
        )]);
        let e = &p.errors()[0];
        assert_eq!(e.file, "bad.rego");
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("expecting expression"), "{e}");
        assert!(p.evaluate(&json!({}), &json!({})).is_err());
        // Rego v0 syntax is refused: policies are Rego v1
        let p = set(&[("v0.rego", "package main\ndeny[msg] { msg := \"x\" }\n")]);
        assert!(!p.errors().is_empty());
    }

    #[test]
    fn runaway_policies_fail_instead_of_passing() {
        let p = set(&[(
            "loop.rego",
            "package main\n\ndeny contains msg if {\n  some i in numbers.range(1, 5000)\n  some j in numbers.range(1, 5000)\n  i + j < 0\n  msg := \"never\"\n}\n",
        )]);
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        assert!(p.evaluate(&json!({}), &json!({})).is_err());
    }

    #[test]
    fn json_conversion_matches_serde() {
        let v = json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}, "d": 18446744073709551615u64});
        assert_eq!(to_rego(&v), Value::deserialize(&v).expect("serde"));
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RegoPolicies>();
    }
}
