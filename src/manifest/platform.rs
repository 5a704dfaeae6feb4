//! `.paved/platform.yaml`: teams, governance approvers and environment types.

use super::names;
use super::yaml::{self, FieldPath, YamlDoc};
use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const PLATFORM_PATH: &str = ".paved/platform.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Paved platform.yaml")]
pub struct Platform {
    #[serde(default)]
    pub teams: BTreeMap<String, Team>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Governance>,
    #[serde(default)]
    pub environment_types: BTreeMap<String, EnvironmentType>,
    /// Who reads everything Paved serves and acts on nothing (compliance): logins and/or
    /// teams defined under `teams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditors: Option<Auditors>,
}

/// `auditors: { members: [login, ...], teams: [team, ...] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auditors {
    /// GitHub logins.
    #[serde(default)]
    pub members: Vec<String>,
    /// Teams (names under `teams`) whose members are auditors.
    #[serde(default)]
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// GitHub logins.
    #[serde(default)]
    pub members: Vec<String>,
    /// A GitHub team (`org/team-slug`) whose members are also members of this team, read
    /// through GitHub's API (`GET /orgs/{org}/teams/{team_slug}/members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<String>,
    /// No quota means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl Team {
    /// GitHub logins compare case-insensitively.
    pub fn has_member(&self, login: &str) -> bool {
        self.members.iter().any(|m| m.eq_ignore_ascii_case(login))
    }

    /// The GitHub team, split into organisation and slug (checked when parsed).
    pub fn github_team(&self) -> Option<(&str, &str)> {
        self.github.as_deref().and_then(|g| g.split_once('/'))
    }
}

/// Whether `s` is `org/team-slug` as GitHub spells them (letters, digits, `-`, `_`).
pub fn is_github_team(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    matches!(s.split_once('/'), Some((org, slug)) if ok(org) && ok(slug))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most environments the team may have at once.
    pub environments: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// Who must approve a pull request that changes `.paved/` or `catalog/`. Members of
    /// these teams are also the platform approvers, who may change any environment.
    pub approvers: ApprovalRules,
}

/// `count` approvals from members of `team`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    pub team: String,
    #[serde(default = "one")]
    pub count: u32,
    /// An extra rule, needed as well, when a preview of the change deletes or replaces
    /// anything (SPEC 14): `{ team: sre, count: 1 }`.
    #[serde(rename = "onDestroy", default, skip_serializing_if = "Option::is_none")]
    pub on_destroy: Option<OnDestroy>,
}

/// `approvals.onDestroy`: `count` approvals from members of `team`, needed as well when a
/// preview deletes or replaces anything (its own type, so the schema needs no recursion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnDestroy {
    pub team: String,
    #[serde(default = "one")]
    pub count: u32,
}

impl OnDestroy {
    /// As an approval rule of its own.
    pub fn rule(&self) -> Approvals {
        Approvals {
            team: self.team.clone(),
            count: self.count,
            on_destroy: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Approval requirements: one rule (`{ team: platform, count: 2 }`), or a list of
/// alternatives of which any one satisfied is enough
/// (`[{ team: platform, count: 2 }, { team: security, count: 1 }]`).
/// Serialized back in the form it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ApprovalRules {
    One(Approvals),
    AnyOf(Vec<Approvals>),
}

impl ApprovalRules {
    /// The alternatives; any one satisfied is enough.
    pub fn alternatives(&self) -> &[Approvals] {
        match self {
            ApprovalRules::One(a) => std::slice::from_ref(a),
            ApprovalRules::AnyOf(v) => v,
        }
    }

    /// The extra rules that apply when a preview destroys or replaces something (each
    /// alternative's `onDestroy`): every one of them must be met too.
    pub fn on_destroy(&self) -> Vec<Approvals> {
        self.alternatives()
            .iter()
            .filter_map(|a| a.on_destroy.as_ref().map(OnDestroy::rule))
            .collect()
    }

    /// The teams named, in order, without repeats.
    pub fn teams(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for a in self.alternatives() {
            if !v.contains(&a.team.as_str()) {
                v.push(&a.team);
            }
        }
        v
    }
}

impl From<Approvals> for ApprovalRules {
    fn from(a: Approvals) -> Self {
        ApprovalRules::One(a)
    }
}

impl<'de> Deserialize<'de> for ApprovalRules {
    // By hand rather than `untagged`, so an error inside a rule (an unknown field, a count
    // that is not a number) keeps its field path, hence its line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ApprovalRules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an approval rule ({ team, count }) or a list of alternative rules")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Approvals::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ApprovalRules::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(a) = seq.next_element::<Approvals>()? {
                    v.push(a);
                }
                Ok(ApprovalRules::AnyOf(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_workflow() -> String {
    "default".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentType {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Workflow name: built-in `default` / `production`, or one from `.paved/workflows/`.
    #[serde(default = "default_workflow")]
    pub workflow: String,
    /// Longest lifetime: `expiresAt` is then required and at most this far from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<HumanDuration>,
    /// Definitions allowed for this type; absent means every definition in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<Vec<String>>,
    /// Tags every manifest of this type must set (non-empty).
    #[serde(default)]
    pub required_tags: Vec<String>,
    /// Approvals a pull request adding, changing or deleting an environment of this type
    /// needs (`paved/approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalRules>,
    /// Whether a new push makes earlier approvals stale: `true` (the default) counts only
    /// approvals of the pull request's current head commit.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub dismiss_stale: bool,
    /// Longest a provisioning run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Every environment of this type must say when it stops (`spec.schedule` with a
    /// `stop` time), checked in `paved/policy`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_schedule: bool,
    /// The network a run of this type has (SPEC 12): `shared` (the default; scripts reach
    /// their clouds) or `none` (loopback only).
    #[serde(default, skip_serializing_if = "Network::is_shared")]
    pub network: Network,
    /// The deploy identity this type's runs get (SPEC 13): the name of one of the server's
    /// `[runner.identities]`. Absent: only `[runner.env]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The identity previews of this type get (SPEC 14); absent: `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_identity: Option<String>,
    /// The preview must succeed (SPEC 14): a failed `plan.sh` or `terraform plan` fails
    /// `paved/plan`, which then runs for this type whatever its workflow lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_plan: bool,
}

/// An environment type's `network`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network.
    #[default]
    Shared,
    /// No network but a loopback of the run's own.
    None,
}

impl Network {
    pub fn is_shared(&self) -> bool {
        *self == Network::Shared
    }
}

/// A duration written as `30m`, `168h`, `7d`, `1h30m` (units `s`, `m`, `h`, `d`, `w`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration {
    text: String,
    seconds: u64,
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*([0-9]+[smhdw])+\\s*$",
            "description": "A duration: numbers with units s, m, h, d, w, e.g. 30m, 168h, 7d, 1h30m.",
        })
    }
}

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 30m, 168h, 7d")
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            num.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        if !num.is_empty() {
            return Err(bad());
        }
        if total == 0 {
            return Err(format!("{s:?}: a duration must be longer than zero"));
        }
        Ok(HumanDuration {
            text: t.to_string(),
            seconds: total,
        })
    }

    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HumanDuration::parse(&s)
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        d.text
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parse and check `platform.yaml`. Every problem found is returned.
pub fn parse_platform(file: &str, text: &str) -> Result<(YamlDoc, Platform), Vec<Diagnostic>> {
    let (doc, p) = yaml::parse_typed::<Platform>(file, text).map_err(|d| vec![d])?;
    let errs = check_platform(&doc, &p);
    if errs.is_empty() {
        Ok((doc, p))
    } else {
        Err(errs)
    }
}

fn check_platform(doc: &YamlDoc, p: &Platform) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    let root = FieldPath::root();
    for (name, team) in &p.teams {
        let at = root.clone().key("teams").key(name.clone());
        if let Err(e) = names::check_team_name(name) {
            errs.push(doc.diag(&at, e));
        }
        for (i, m) in team.members.iter().enumerate() {
            if !names::is_github_login(m) {
                errs.push(doc.diag(
                    &at.clone().key("members").index(i),
                    format!("{m:?} is not a GitHub login"),
                ));
            }
        }
        if let Some(g) = &team.github {
            if !is_github_team(g) {
                errs.push(doc.diag(
                    &at.clone().key("github"),
                    format!("{g:?} is not a GitHub team: write it as org/team-slug"),
                ));
            }
        }
    }
    if let Some(a) = &p.auditors {
        let at = root.clone().key("auditors");
        for (i, m) in a.members.iter().enumerate() {
            if !names::is_github_login(m) {
                errs.push(doc.diag(
                    &at.clone().key("members").index(i),
                    format!("{m:?} is not a GitHub login"),
                ));
            }
        }
        for (i, t) in a.teams.iter().enumerate() {
            if !p.teams.contains_key(t) {
                errs.push(doc.diag(
                    &at.clone().key("teams").index(i),
                    format!("team {t:?} is not defined under teams"),
                ));
            }
        }
    }
    let check_approvals = |errs: &mut Vec<Diagnostic>, rules: &ApprovalRules, at: FieldPath| {
        if rules.alternatives().is_empty() {
            errs.push(doc.diag(&at, "must name at least one team and count"));
        }
        for (i, a) in rules.alternatives().iter().enumerate() {
            let at = match rules {
                ApprovalRules::One(_) => at.clone(),
                ApprovalRules::AnyOf(_) => at.clone().index(i),
            };
            if !p.teams.contains_key(&a.team) {
                errs.push(doc.diag(
                    &at.clone().key("team"),
                    format!("team {:?} is not defined under teams", a.team),
                ));
            }
            if a.count == 0 {
                errs.push(doc.diag(&at.clone().key("count"), "must be at least 1"));
            }
            if let Some(d) = &a.on_destroy {
                let at = at.key("onDestroy");
                if !p.teams.contains_key(&d.team) {
                    errs.push(doc.diag(
                        &at.clone().key("team"),
                        format!("team {:?} is not defined under teams", d.team),
                    ));
                }
                if d.count == 0 {
                    errs.push(doc.diag(&at.key("count"), "must be at least 1"));
                }
            }
        }
    };
    if let Some(g) = &p.governance {
        check_approvals(
            &mut errs,
            &g.approvers,
            root.clone().key("governance").key("approvers"),
        );
    }
    for (name, t) in &p.environment_types {
        let at = root.clone().key("environmentTypes").key(name.clone());
        if !names::is_dns_label(name, 1, 63) {
            errs.push(doc.diag(
                &at,
                format!(
                    "{name:?} is not a valid type name: use lower-case letters, digits and '-'"
                ),
            ));
        }
        if let Some(a) = &t.approvals {
            check_approvals(&mut errs, a, at.clone().key("approvals"));
        }
        if let Some(defs) = &t.definitions {
            for (i, d) in defs.iter().enumerate() {
                if let Err(e) = names::check_definition_name(d) {
                    errs.push(doc.diag(&at.clone().key("definitions").index(i), e));
                }
            }
        }
        for (field, value) in [
            ("identity", &t.identity),
            ("planIdentity", &t.plan_identity),
        ] {
            if let Some(v) = value {
                if !names::is_identity_name(v) {
                    errs.push(doc.diag(
                        &at.clone().key(field),
                        format!("{v:?} is not an identity name: 1 to 63 lower-case letters, digits, '-' and '_'"),
                    ));
                }
            }
        }
        for (i, tag) in t.required_tags.iter().enumerate() {
            if tag.is_empty() {
                errs.push(doc.diag(
                    &at.clone().key("requiredTags").index(i),
                    "must not be empty",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "\
teams:
  payments: { members: [octocat, hubot], quota: { environments: 5 } }
  platform: { members: [admin1, admin2] }
governance: { approvers: { team: platform, count: 1 } }   # for .paved/ and catalog/ changes
environmentTypes:
  dev:  { workflow: default, maxTtl: 168h, definitions: [postgres-db], requiredTags: [cost-center] }
  prod: { workflow: production, approvals: { team: platform, count: 2 }, definitions: [postgres-db] }
";

    #[test]
    fn parses_the_spec_sketch() {
        let (_, p) = parse_platform(PLATFORM_PATH, SPEC).expect("valid");
        assert_eq!(p.teams["payments"].quota, Some(Quota { environments: 5 }));
        assert!(p.teams["payments"].has_member("OctoCat"));
        let dev = &p.environment_types["dev"];
        assert_eq!(dev.max_ttl.as_ref().map(|d| d.seconds()), Some(168 * 3600));
        assert_eq!(p.environment_types["prod"].workflow, "production");
    }

    #[test]
    fn durations() {
        assert_eq!(HumanDuration::parse("7d").map(|d| d.seconds()), Ok(604_800));
        assert_eq!(HumanDuration::parse("1h30m").map(|d| d.seconds()), Ok(5400));
        assert!(HumanDuration::parse("7").is_err());
        assert!(HumanDuration::parse("7y").is_err());
        assert!(HumanDuration::parse("0h").is_err());
        assert!(HumanDuration::parse("99999999999999999999w").is_err());
    }

    #[test]
    fn errors_name_field_and_line() {
        let text = SPEC.replace("maxTtl: 168h", "maxTtl: 168x");
        let errs = parse_platform(PLATFORM_PATH, &text).expect_err("bad ttl");
        assert_eq!(
            errs[0].field.as_deref(),
            Some("environmentTypes.dev.maxTtl")
        );
        assert_eq!(errs[0].line, Some(6));
        let text = SPEC.replace("count: 2", "count: 2, team: nobody");
        assert!(parse_platform(PLATFORM_PATH, &text).is_err());
        let text = SPEC.replace("team: platform, count: 1", "team: ghosts, count: 1");
        let errs = parse_platform(PLATFORM_PATH, &text).expect_err("unknown team");
        assert_eq!(errs[0].field.as_deref(), Some("governance.approvers.team"));
        assert_eq!(errs[0].line, Some(4));
    }

    #[test]
    fn approvals_are_one_rule_or_alternatives() {
        let (_, p) = parse_platform(PLATFORM_PATH, SPEC).expect("valid");
        let prod = &p.environment_types["prod"];
        assert!(prod.dismiss_stale, "dismissStale defaults to true");
        let rules = prod.approvals.as_ref().expect("approvals");
        assert_eq!(
            rules.alternatives(),
            [Approvals {
                team: "platform".into(),
                count: 2,
                on_destroy: None,
            }]
        );
        // Serialized as written: policies see the same shape as before.
        assert_eq!(
            serde_json::to_value(rules).expect("json"),
            serde_json::json!({"team": "platform", "count": 2})
        );

        let text = SPEC
            .replace("  platform: {", "  security: { members: [sec1] }\n  platform: {")
            .replace(
                "approvals: { team: platform, count: 2 }",
                "dismissStale: false, approvals: [{ team: platform, count: 2 }, { team: security }]",
            )
            .replace(
                "approvers: { team: platform, count: 1 }",
                "approvers: [{ team: platform }, { team: security }]",
            );
        let (_, p) = parse_platform(PLATFORM_PATH, &text).expect("alternatives");
        let prod = &p.environment_types["prod"];
        assert!(!prod.dismiss_stale);
        let rules = prod.approvals.as_ref().expect("approvals");
        assert_eq!(rules.alternatives().len(), 2);
        assert_eq!(rules.alternatives()[1].count, 1, "count defaults to 1");
        assert_eq!(rules.teams(), ["platform", "security"]);
        let gov = p.governance.as_ref().expect("governance");
        assert_eq!(gov.approvers.teams(), ["platform", "security"]);
    }

    #[test]
    fn bad_approvals_name_field_and_line() {
        let bad = |from: &str, to: &str| {
            let text = SPEC.replace(from, to);
            parse_platform(PLATFORM_PATH, &text).expect_err(to)
        };
        let errs = bad(
            "approvals: { team: platform, count: 2 }",
            "approvals: [{ team: platform, count: 2 }, { team: ghosts, count: 0 }]",
        );
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_deref()).collect();
        assert_eq!(
            fields,
            [
                Some("environmentTypes.prod.approvals[1].team"),
                Some("environmentTypes.prod.approvals[1].count")
            ]
        );
        assert!(errs.iter().all(|e| e.line == Some(7)), "{errs:?}");
        assert!(errs[1].message.contains("at least 1"), "{errs:?}");

        let errs = bad("approvals: { team: platform, count: 2 }", "approvals: []");
        assert_eq!(
            errs[0].field.as_deref(),
            Some("environmentTypes.prod.approvals")
        );
        assert_eq!(errs[0].line, Some(7));

        let errs = bad(
            "{ team: platform, count: 1 }",
            "[{ team: platform, cnt: 1 }]",
        );
        assert_eq!(
            errs[0].field.as_deref(),
            Some("governance.approvers[0].cnt"),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, Some(4));

        let errs = bad(
            "approvals: { team: platform, count: 2 }",
            "approvals: platform",
        );
        assert_eq!(
            errs[0].field.as_deref(),
            Some("environmentTypes.prod.approvals")
        );
        assert!(errs[0].message.contains("approval rule"), "{errs:?}");

        let errs = bad(
            "workflow: production,",
            "workflow: production, dismissStale: maybe,",
        );
        assert_eq!(
            errs[0].field.as_deref(),
            Some("environmentTypes.prod.dismissStale")
        );
        assert_eq!(errs[0].line, Some(7));
    }

    #[test]
    fn github_teams_and_auditors_are_read_and_checked() {
        let text = SPEC
            .replace(
                "  platform: { members: [admin1, admin2] }",
                "  platform: { members: [admin1, admin2] }\n  security: { github: acme/security-team }",
            )
            .replace(
                "governance:",
                "auditors: { members: [auditor1], teams: [security] }\ngovernance:",
            );
        let (_, p) = parse_platform(PLATFORM_PATH, &text).expect("valid");
        assert_eq!(
            p.teams["security"].github_team(),
            Some(("acme", "security-team"))
        );
        let a = p.auditors.expect("auditors");
        assert_eq!(a.members, vec!["auditor1"]);
        assert_eq!(a.teams, vec!["security"]);

        let bad = text
            .replace("acme/security-team", "acme")
            .replace("teams: [security]", "teams: [ghosts]");
        let errs = parse_platform(PLATFORM_PATH, &bad).expect_err("invalid");
        let text_of = |field: &str| {
            errs.iter()
                .find(|d| d.field.as_deref() == Some(field))
                .map(|d| (d.message.clone(), d.line))
        };
        let (msg, line) = text_of("teams.security.github").expect("github error");
        assert!(msg.contains("org/team-slug"), "{msg}");
        assert_eq!(line, Some(4));
        let (msg, _) = text_of("auditors.teams[0]").expect("auditors error");
        assert!(msg.contains("ghosts"), "{msg}");
    }
}
