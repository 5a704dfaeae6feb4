//! `paved init [DIR]`: a platform repository a team can push as it is. Governance in
//! `.paved/platform.yaml` (a team, the platform team with the caller as its admin, `dev`
//! and `prod` types, governance approvers), the example policies and definitions, the JSON
//! Schemas for editors, a README in `environments/` saying how to ask for an environment,
//! and a GitHub Actions workflow that runs `paved check` on pull requests.

use crate::ids::{is_github_login, TeamName};
use std::path::{Path, PathBuf};

/// Who and what the new repository names.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The first team that asks for environments.
    pub team: String,
    /// Its members (at least one).
    pub members: Vec<String>,
    /// The platform team: its members approve governance changes and administer Paved.
    pub platform_team: String,
    /// The platform team's members: the caller first.
    pub admins: Vec<String>,
}

/// What `paved init` refuses, before it writes anything.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0:?} is not a team name: lower case letters, digits and dashes, at most 63")]
    Team(String),
    #[error("{0:?} is not a GitHub login")]
    Login(String),
    #[error("the team and the platform team must differ (both are {0:?})")]
    SameTeam(String),
    #[error("these files exist already; paved init writes nothing over a file:\n{}", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file of the new repository: its path, its text, and whether it is a script.
pub struct File {
    pub path: &'static str,
    pub text: String,
    pub executable: bool,
}

/// The example definitions and policies, as the project's `examples/` has them (the same
/// ones `paved demo` runs), embedded so the binary writes them anywhere.
const EXAMPLES: &[(&str, &str, bool)] = &[
    (
        "catalog/static-site/environment.yaml",
        include_str!("../../examples/catalog/static-site/environment.yaml"),
        false,
    ),
    (
        "catalog/static-site/deploy.sh",
        include_str!("../../examples/catalog/static-site/deploy.sh"),
        true,
    ),
    (
        "catalog/static-site/delete.sh",
        include_str!("../../examples/catalog/static-site/delete.sh"),
        true,
    ),
    (
        "catalog/static-site/plan.sh",
        include_str!("../../examples/catalog/static-site/plan.sh"),
        true,
    ),
    (
        "catalog/static-site/status.sh",
        include_str!("../../examples/catalog/static-site/status.sh"),
        true,
    ),
    (
        "catalog/postgres-db/environment.yaml",
        include_str!("../../examples/catalog/postgres-db/environment.yaml"),
        false,
    ),
    (
        "catalog/postgres-db/deploy.sh",
        include_str!("../../examples/catalog/postgres-db/deploy.sh"),
        true,
    ),
    (
        "catalog/postgres-db/delete.sh",
        include_str!("../../examples/catalog/postgres-db/delete.sh"),
        true,
    ),
    (
        ".paved/policies/cost_center.rego",
        include_str!("../../examples/.paved/policies/cost_center.rego"),
        false,
    ),
    (
        ".paved/policies/lifetime.rego",
        include_str!("../../examples/.paved/policies/lifetime.rego"),
        false,
    ),
    (
        ".paved/policies/sizes.rego",
        include_str!("../../examples/.paved/policies/sizes.rego"),
        false,
    ),
];

/// Checks the names: every one is a team name or a GitHub login, once.
fn validate(o: &InitOptions) -> Result<(), InitError> {
    for t in [&o.team, &o.platform_team] {
        TeamName::parse(t).map_err(|_| InitError::Team(t.clone()))?;
    }
    if o.team == o.platform_team {
        return Err(InitError::SameTeam(o.team.clone()));
    }
    for l in o.members.iter().chain(&o.admins) {
        if !is_github_login(l) {
            return Err(InitError::Login(l.clone()));
        }
    }
    if o.members.is_empty() {
        return Err(InitError::Login(String::new()));
    }
    if o.admins.is_empty() {
        return Err(InitError::Login(String::new()));
    }
    Ok(())
}

fn yaml_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// `.paved/platform.yaml` for `o`.
fn platform_yaml(o: &InitOptions) -> String {
    format!(
        "# Governance for this environments repository (written by `paved init`).\n\
         # Paved reads this file from the default branch only: a pull request that changes it\n\
         # (or anything under .paved/ or catalog/) needs the governance approvers below, and\n\
         # its rules apply once it is merged. Reference: docs/file-formats.md.\n\
         teams:\n\
         \x20 {team}:\n\
         \x20   members: {members}\n\
         \x20   quota:\n\
         \x20     environments: 5\n\
         \x20 # The platform team: administers Paved and approves governance changes.\n\
         \x20 {platform}:\n\
         \x20   members: {admins}\n\
         \n\
         governance:\n\
         \x20 approvers:\n\
         \x20   team: {platform}\n\
         \x20   count: 1\n\
         \n\
         environmentTypes:\n\
         \x20 dev:\n\
         \x20   description: Short-lived environments for development and previews.\n\
         \x20   workflow: default\n\
         \x20   # expiresAt is required, at most this far ahead.\n\
         \x20   maxTtl: 30d\n\
         \x20   definitions: [postgres-db, static-site]\n\
         \x20   requiredTags: [cost-center]\n\
         \x20   timeout: 30m\n\
         \x20 prod:\n\
         \x20   description: Production environments.\n\
         \x20   workflow: production\n\
         \x20   # Each change needs an approval from the platform team.\n\
         \x20   approvals:\n\
         \x20     team: {platform}\n\
         \x20     count: 1\n\
         \x20   definitions: [postgres-db]\n\
         \x20   requiredTags: [cost-center]\n",
        team = o.team,
        members = yaml_list(&o.members),
        platform = o.platform_team,
        admins = yaml_list(&o.admins),
    )
}

fn environments_readme(o: &InitOptions) -> String {
    format!(
        "# Environments\n\
         \n\
         Each file here is an environment: `environments/<team>/<name>.yaml`. To ask for one,\n\
         open a pull request that adds a file (or use the portal's Templates page, which opens\n\
         it for you). Paved checks it and posts its verdicts on the pull request (`paved/schema`,\n\
         `paved/policy`, `paved/quota`, `paved/approval`); merging it provisions the environment,\n\
         and deleting the file tears it down. Git history, with the notes Paved writes, is the\n\
         record.\n\
         \n\
         For example, `environments/{team}/my-site.yaml`:\n\
         \n\
         ```yaml\n\
         apiVersion: paved/v1\n\
         kind: Environment\n\
         metadata:\n\
         \x20 name: my-site\n\
         \x20 team: {team}\n\
         \x20 owner: {owner}\n\
         spec:\n\
         \x20 type: dev\n\
         \x20 definition: static-site\n\
         \x20 expiresAt: 2030-01-31T00:00:00Z   # dev allows at most 30 days from now\n\
         \x20 tags: {{ cost-center: cc-1234 }}\n\
         ```\n\
         \n\
         Check it before you push: `paved check .` runs the same checks on your checkout.\n\
         Editors validate as you type with the schemas in `.paved/schemas/`.\n",
        team = o.team,
        owner = o.members.first().map_or("", String::as_str),
    )
}

/// The CI workflow: `paved check` on every pull request that touches what Paved reads.
const CHECK_WORKFLOW: &str = r#"# Runs `paved check` on pull requests (written by `paved init`). The Paved server posts the
# authoritative verdicts as commit statuses, reading governance from the base branch; this
# job is the same checks early, on the pull request's own checkout, for its author.
name: paved check
on:
  pull_request:
    paths: ["environments/**", ".paved/**", "catalog/**"]
permissions:
  contents: read
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      # The paved binary your server runs (`cargo build --profile dist`), published where
      # this job can fetch it: set the repository variable PAVED_DOWNLOAD_URL to its URL.
      - name: Install paved
        env:
          PAVED_DOWNLOAD_URL: ${{ vars.PAVED_DOWNLOAD_URL }}
        run: |
          test -n "$PAVED_DOWNLOAD_URL" || { echo "set the repository variable PAVED_DOWNLOAD_URL"; exit 1; }
          curl -fsSL "$PAVED_DOWNLOAD_URL" -o "$RUNNER_TEMP/paved"
          chmod +x "$RUNNER_TEMP/paved"
      - name: paved check
        run: '"$RUNNER_TEMP/paved" check .'
"#;

/// Every file of the new repository.
pub fn files(o: &InitOptions) -> Result<Vec<File>, InitError> {
    validate(o)?;
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
    let mut out = vec![
        File {
            path: ".paved/platform.yaml",
            text: platform_yaml(o),
            executable: false,
        },
        File {
            path: "environments/README.md",
            text: environments_readme(o),
            executable: false,
        },
        File {
            path: ".github/workflows/paved-check.yml",
            text: CHECK_WORKFLOW.to_string(),
            executable: false,
        },
    ];
    for (name, file, _) in crate::manifest::schema::SCHEMAS {
        let path: &'static str = match file {
            "environment.schema.json" => ".paved/schemas/environment.schema.json",
            "platform.schema.json" => ".paved/schemas/platform.schema.json",
            _ => continue,
        };
        out.push(File {
            path,
            text: pretty(crate::manifest::schema::by_name(name).unwrap_or_default()),
            executable: false,
        });
    }
    out.extend(EXAMPLES.iter().map(|(path, text, executable)| File {
        path,
        text: (*text).to_string(),
        executable: *executable,
    }));
    Ok(out)
}

/// Writes the repository into `dir` (made if missing). Refuses, writing nothing, when any
/// of its files exists already. Returns the paths written.
pub fn write(dir: &Path, o: &InitOptions) -> Result<Vec<PathBuf>, InitError> {
    let files = files(o)?;
    let existing: Vec<PathBuf> = files
        .iter()
        .map(|f| dir.join(f.path))
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    let mut written = Vec::new();
    for f in &files {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &f.text).map_err(io(&path))?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> InitOptions {
        InitOptions {
            team: "payments".into(),
            members: vec!["octocat".into()],
            platform_team: "platform".into(),
            admins: vec!["mona".into()],
        }
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tmp");
        for bad in [
            InitOptions {
                team: "Payments".into(),
                ..options()
            },
            InitOptions {
                admins: vec!["-mona".into()],
                ..options()
            },
            InitOptions {
                platform_team: "payments".into(),
                ..options()
            },
        ] {
            assert!(write(dir.path(), &bad).is_err(), "{bad:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn it_never_writes_over_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let mine = dir.path().join(".paved/platform.yaml");
        std::fs::create_dir_all(mine.parent().expect("parent")).expect("mkdir");
        std::fs::write(&mine, "mine").expect("write");
        let err = write(dir.path(), &options()).expect_err("refused");
        assert!(err.to_string().contains("platform.yaml"), "{err}");
        assert_eq!(std::fs::read_to_string(&mine).expect("read"), "mine");
        assert!(!dir.path().join("catalog").exists());
    }
}
