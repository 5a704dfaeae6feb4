//! Names and paths: what an environment, a team, a definition or a manifest path may be.

pub use crate::ids::{is_dns_label, is_github_login};
use crate::ids::{EnvName, TeamName};

/// Environment names: DNS labels of 3 to 40 characters ([`EnvName`]).
pub fn check_environment_name(s: &str) -> Result<(), String> {
    EnvName::parse(s).map(|_| ()).map_err(|e| e.to_string())
}

/// Team names: DNS labels of 1 to 63 characters, folder names under `environments/`
/// ([`TeamName`]).
pub fn check_team_name(s: &str) -> Result<(), String> {
    TeamName::parse(s).map(|_| ()).map_err(|e| e.to_string())
}

/// Definition names are folder names under `catalog/`. ADE catalogs use mixed case, so
/// letters of both cases, digits, '.', '_' and '-' are allowed, starting with a letter or digit.
pub fn check_definition_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid definition name: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

/// The parts of a manifest path `environments/<team>/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPath {
    pub team: TeamName,
    pub name: EnvName,
}

/// The one file under `environments/` that is not a manifest: a README for the people who
/// ask for environments (`paved init` writes one). Never checked, never provisioned.
pub const ENVIRONMENTS_README: &str = "environments/README.md";

/// Is this path one of `environments/`'s, that is, a manifest or something that must be
/// refused as one? Everything under `environments/` but its README.
pub fn is_under_environments(path: &str) -> bool {
    path.starts_with("environments/") && path != ENVIRONMENTS_README
}

/// Check a repository path under `environments/` and split it into team and name.
/// Every refusal says what is wrong in words a user can act on.
pub fn parse_manifest_path(path: &str) -> Result<ManifestPath, String> {
    let shown: String = path.chars().take(200).collect();
    if path.chars().any(|c| c.is_control()) {
        return Err(format!("{shown:?}: path contains control characters"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(format!(
            "{shown}: path must not contain '.' or '..' components"
        ));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{shown}: path has an empty component"));
    }
    if parts.first() != Some(&"environments") {
        return Err(format!(
            "{shown}: manifests live under environments/<team>/<name>.yaml"
        ));
    }
    if parts.len() != 3 {
        return Err(format!(
            "{shown}: manifests must be exactly two levels under environments/, as environments/<team>/<name>.yaml"
        ));
    }
    let team = parts[1];
    let file = parts[2];
    let team = TeamName::parse(team).map_err(|e| format!("{shown}: team folder {e}"))?;
    let stem = if let Some(stem) = file.strip_suffix(".yaml") {
        stem
    } else if file.ends_with(".yml") {
        return Err(format!(
            "{shown}: manifests use the .yaml extension, not .yml"
        ));
    } else {
        return Err(format!(
            "{shown}: only environment manifests (<name>.yaml) belong under environments/<team>/"
        ));
    };
    let name = EnvName::parse(stem).map_err(|e| format!("{shown}: file name {e}"))?;
    Ok(ManifestPath { team, name })
}

/// Whether `name` may name a deploy identity (`[runner.identities.<name>]`, a type's
/// `identity`): 1 to 63 lower-case letters, digits, `-` and `_`, starting with a letter or
/// digit.
pub fn is_identity_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_of_environments_is_not_a_manifest_but_any_other_file_is() {
        assert!(!is_under_environments("environments/README.md"));
        assert!(is_under_environments("environments/readme.md"));
        assert!(is_under_environments("environments/payments/README.md"));
        assert!(is_under_environments("environments/payments/web.yaml"));
    }

    #[test]
    fn dns_labels() {
        assert!(check_environment_name("checkout-preview").is_ok());
        assert!(check_environment_name("ab").is_err());
        assert!(check_environment_name("-abc").is_err());
        assert!(check_environment_name("abc-").is_err());
        assert!(check_environment_name("Abc").is_err());
        assert!(check_environment_name(&"a".repeat(41)).is_err());
        assert!(check_environment_name(&"a".repeat(40)).is_ok());
    }

    #[test]
    fn manifest_paths() {
        assert_eq!(
            parse_manifest_path("environments/payments/checkout-preview.yaml").ok(),
            Some(ManifestPath {
                team: TeamName::parse("payments").unwrap(),
                name: EnvName::parse("checkout-preview").unwrap()
            })
        );
        for bad in [
            "environments/../secrets.yaml",
            "environments/payments/../../etc/passwd.yaml",
            "environments/payments/x.yml",
            "environments/payments/README.md",
            "environments/top.yaml",
            "environments/a/b/c.yaml",
            "environments/Pay ments/abc.yaml",
            "environments/payments/ab.yaml",
            "environments//abc.yaml",
        ] {
            assert!(parse_manifest_path(bad).is_err(), "{bad}");
        }
        let e = parse_manifest_path("environments/../x.yaml").unwrap_err();
        assert!(e.contains(".."), "{e}");
    }

    #[test]
    fn logins() {
        assert!(is_github_login("octocat"));
        assert!(is_github_login("Octo-Cat"));
        assert!(!is_github_login("-x"));
        assert!(!is_github_login("a b"));
    }
}
