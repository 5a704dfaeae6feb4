//! Newtypes for the identifiers that flow between GitHub, Git and the store, so a PR
//! number is never passed where an issue id or a count was meant, and every value was
//! validated once, at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

mod names;
pub use names::{is_dns_label, is_github_login, EnvName, Login, NameError, TeamName};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("not a commit SHA (40 hex digits): {0:?}")]
    Sha(String),
    #[error("not a repository name (owner/name): {0:?}")]
    Repo(String),
    #[error("not a delivery id: {0:?}")]
    Delivery(String),
}

/// A full 40-hex-digit commit id, lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitSha(s.to_ascii_lowercase()))
        } else {
            Err(IdError::Sha(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl TryFrom<String> for CommitSha {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        CommitSha::parse(&s)
    }
}
impl From<CommitSha> for String {
    fn from(s: CommitSha) -> String {
        s.0
    }
}
impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pull request number within one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrNumber(pub u64);

impl fmt::Display for PrNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `owner/name` of a GitHub repository. Both parts are restricted to GitHub's own
/// character set, so they are safe in URLs, paths and file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName {
    owner: String,
    name: String,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl RepoName {
    pub fn new(owner: &str, name: &str) -> Result<Self, IdError> {
        if valid_part(owner) && valid_part(name) {
            Ok(RepoName {
                owner: owner.to_string(),
                name: name.to_string(),
            })
        } else {
            Err(IdError::Repo(format!("{owner}/{name}")))
        }
    }
    pub fn parse(full: &str) -> Result<Self, IdError> {
        let (o, n) = full
            .split_once('/')
            .ok_or_else(|| IdError::Repo(full.to_string()))?;
        RepoName::new(o, n)
    }
    pub fn owner(&self) -> &str {
        &self.owner
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::str::FromStr for RepoName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        RepoName::parse(s)
    }
}
impl TryFrom<String> for RepoName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        RepoName::parse(&s)
    }
}
impl From<RepoName> for String {
    fn from(r: RepoName) -> String {
        r.to_string()
    }
}
impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// GitHub's `X-GitHub-Delivery` header: a GUID. Kept opaque but bounded and printable,
/// since it becomes a database key and appears in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(DeliveryId(s.to_string()))
        } else {
            Err(IdError::Delivery(s.chars().take(100).collect()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Numeric ids Paved or GitHub assign. Each is its own type, so a run id is never passed
/// where an operation id was meant. They serialize as plain numbers.
macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        #[cfg(feature = "utoipa")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$inner as utoipa::PartialSchema>::schema()
            }
        }
        #[cfg(feature = "utoipa")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

numeric_id!(
    /// A provisioning operation (one attempt), as the store numbers them.
    OperationId(i64)
);
numeric_id!(
    /// One evaluation of a pull request's head (what a status's `target_url` shows).
    EvaluationId(i64)
);
numeric_id!(
    /// A GitHub issue or pull request comment.
    CommentId(u64)
);
numeric_id!(
    /// A GitHub App installation.
    InstallationId(u64)
);
numeric_id!(
    /// A GitHub deployment.
    DeploymentId(u64)
);

/// The ids that travel as strings, as the API's OpenAPI document describes them: a string
/// with the pattern the parser enforces.
#[cfg(feature = "utoipa")]
mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    fn string(pattern: &str, description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
            .into()
    }

    impl utoipa::PartialSchema for super::CommitSha {
        fn schema() -> RefOr<Schema> {
            string("^[0-9a-f]{40}$", "A full commit id, lower case.")
        }
    }
    impl utoipa::ToSchema for super::CommitSha {}

    impl utoipa::PartialSchema for super::RepoName {
        fn schema() -> RefOr<Schema> {
            string(
                "^[A-Za-z0-9._-]{1,100}/[A-Za-z0-9._-]{1,100}$",
                "`owner/name` of a GitHub repository.",
            )
        }
    }
    impl utoipa::ToSchema for super::RepoName {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_must_be_40_hex() {
        assert!(CommitSha::parse(&"a".repeat(40)).is_ok());
        assert!(CommitSha::parse("abc").is_err());
        assert!(CommitSha::parse(&"g".repeat(40)).is_err());
        assert_eq!(
            CommitSha::parse(&"A".repeat(40)).unwrap().as_str(),
            "a".repeat(40)
        );
    }

    #[test]
    fn repo_names_refuse_path_tricks() {
        assert!(RepoName::parse("octo/hello-world").is_ok());
        assert!(RepoName::parse("../etc").is_err());
        assert!(RepoName::parse("octo/..").is_err());
        assert!(RepoName::parse("octo/a b").is_err());
        assert!(RepoName::parse("noslash").is_err());
    }

    #[test]
    fn delivery_ids_are_bounded_and_printable() {
        assert!(DeliveryId::parse("72d3162e-cc78-11e3-81ab-4c9367dc0958").is_ok());
        assert!(DeliveryId::parse("").is_err());
        assert!(DeliveryId::parse("a\nb").is_err());
        assert!(DeliveryId::parse(&"a".repeat(101)).is_err());
    }

    #[test]
    fn numeric_ids_are_plain_numbers_in_json() {
        assert_eq!(serde_json::to_string(&OperationId(7)).unwrap(), "7");
        let r: EvaluationId = serde_json::from_str("42").unwrap();
        assert_eq!(r, EvaluationId(42));
        assert_eq!("13".parse::<CommentId>().unwrap(), CommentId(13));
        assert_eq!(InstallationId(5).to_string(), "5");
    }
}
