//! The domain's own names: an environment's, a team's, a person's. Each is validated once
//! where it enters (a manifest, a payload, a request, a database row) and is then a type of
//! its own, so a team is never passed where an environment was meant. They read as `str`
//! (`Deref`), compare with strings, and travel as plain strings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused: the words say what the name may be.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{value:?} is not a valid {what}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// Whether `s` is a DNS label (`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`) of `min..=max` characters.
pub fn is_dns_label(s: &str, min: usize, max: usize) -> bool {
    let b = s.as_bytes();
    b.len() >= min
        && b.len() <= max
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// GitHub logins: 1-39 characters, alphanumerics and hyphens, not starting with one.
pub fn is_github_login(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 39
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
}

macro_rules! name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:literal, $pattern:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        /// As the string it is (`"web-1"`): messages that quote a name with `{:?}` read
        /// the same whether it is typed or not.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            /// What the name may be, in words (for error messages).
            pub const RULE: &'static str = $rule;
            /// The same, as a regular expression (for JSON Schemas).
            pub const PATTERN: &'static str = $pattern;

            pub fn parse(s: &str) -> Result<Self, NameError> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err(NameError {
                        what: $what,
                        value: s.chars().take(100).collect(),
                        rule: $rule,
                    })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::parse(&s)
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::parse(s)
            }
        }
        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        #[cfg(feature = "utoipa")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .description(Some(concat!("A ", $what, ": ", $rule, ".")))
                    .into()
            }
        }
        #[cfg(feature = "utoipa")]
        impl utoipa::ToSchema for $name {}
    };
}

name!(
    /// An environment's name, unique per repository: a DNS label of 3 to 40 characters
    /// (`environments/<team>/<name>.yaml`).
    EnvName,
    "environment name",
    "use 3-40 lower-case letters, digits and '-', starting and ending with a letter or digit",
    "^[a-z0-9]([-a-z0-9]{1,38}[a-z0-9])$",
    |s| is_dns_label(s, 3, 40)
);

name!(
    /// A team's name: a DNS label of 1 to 63 characters (a folder under `environments/`).
    TeamName,
    "team name",
    "use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit",
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    |s| is_dns_label(s, 1, 63)
);

name!(
    /// A GitHub login as GitHub names who opened, reviewed or merged a pull request: a
    /// person's, an Enterprise Managed User's (`handle_shortcode`), or an App's bot account
    /// (`name[bot]`). `paved` is what Paved itself did (the scheduler's operations). Wider
    /// than [`is_github_login`] (what a manifest's `owner` may be): a payload from an
    /// enterprise must never be refused for its users' names.
    Login,
    "GitHub login",
    "use 1-100 letters, digits, '-' and '_', starting with a letter or digit (an App's bot ends in [bot])",
    "^[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\\[bot\\])?$",
    |s| is_login(s.strip_suffix("[bot]").unwrap_or(s))
);

/// A person's login in any GitHub (EMU's included), without a bot's suffix.
fn is_login(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

impl Login {
    /// Who did what Paved did on its own (the scheduler's operations).
    pub fn paved() -> Login {
        Login("paved".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_are_dns_labels_of_3_to_40() {
        assert!(EnvName::parse("web-1").is_ok());
        for bad in ["ab", "Web", "-web", "web-", "a_b", &"a".repeat(41), "../x"] {
            let e = EnvName::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("environment name"), "{e}");
        }
    }

    #[test]
    fn team_names_are_dns_labels_of_1_to_63() {
        assert!(TeamName::parse("a").is_ok());
        assert!(TeamName::parse("payments").is_ok());
        assert!(TeamName::parse("Payments").is_err());
        assert!(TeamName::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn logins_are_githubs_and_bots() {
        for ok in [
            "octocat",
            "Octo-Cat",
            "dependabot[bot]",
            "paved",
            "mona_acme",
        ] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "a b",
            "x[bot][bot]",
            "[bot]",
            "a/b",
            &"a".repeat(101),
        ] {
            assert!(Login::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_travel_as_strings_and_are_checked_on_the_way_in() {
        let n: EnvName = serde_json::from_str("\"web-1\"").expect("valid");
        assert_eq!(serde_json::to_string(&n).expect("json"), "\"web-1\"");
        assert!(serde_json::from_str::<EnvName>("\"Web\"").is_err());
        assert_eq!(n, "web-1");
        assert_eq!(&*n, "web-1");
        assert_eq!(format!("{n:?}"), "\"web-1\"", "quoted as a string is");
    }
}
