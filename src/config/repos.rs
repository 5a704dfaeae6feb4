//! Which repositories Paved serves (`github.repositories`, globs).

use super::ConfigError;

/// Which repositories Paved serves: `owner/name` patterns where `*` matches any run of
/// characters within a part and `?` one character, compared case-insensitively (GitHub's
/// names are). `allow_any` serves every repository (only when set explicitly).
#[derive(Debug, Clone, Default)]
pub struct RepoFilter {
    patterns: Vec<String>,
    allow_any: bool,
}

impl RepoFilter {
    /// A filter from patterns, checked to be `owner/name` globs.
    pub fn new(patterns: &[String], allow_any: bool) -> Result<RepoFilter, ConfigError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let ok = p.split_once('/').is_some_and(|(o, n)| {
                let part = |s: &str| {
                    !s.is_empty()
                        && s.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?')
                        })
                };
                part(o) && part(n)
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "github.repositories: {p:?} is not an owner/name pattern (letters, digits, -, _, ., and the globs * and ?)"
                )));
            }
            out.push(p.to_ascii_lowercase());
        }
        Ok(RepoFilter {
            patterns: out,
            allow_any,
        })
    }

    /// Every repository (`github.allow_any_repository = true`).
    pub fn any() -> RepoFilter {
        RepoFilter {
            patterns: Vec::new(),
            allow_any: true,
        }
    }

    /// Exactly these repositories.
    pub fn only<'a>(names: impl IntoIterator<Item = &'a str>) -> RepoFilter {
        RepoFilter {
            patterns: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            allow_any: false,
        }
    }

    /// Whether no repository is named and any is not allowed either.
    /// The repositories named without a glob (`acme/environments`, not `acme/env-*`).
    pub fn literal_names(&self) -> Vec<crate::ids::RepoName> {
        self.patterns
            .iter()
            .filter(|p| !p.contains(['*', '?']))
            .filter_map(|p| crate::ids::RepoName::parse(p).ok())
            .collect()
    }

    pub fn is_unset(&self) -> bool {
        self.patterns.is_empty() && !self.allow_any
    }

    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether Paved serves `repo`.
    pub fn allows(&self, repo: &crate::ids::RepoName) -> bool {
        if self.allow_any {
            return true;
        }
        let full = repo.to_string().to_ascii_lowercase();
        let (owner, name) = full.split_once('/').unwrap_or((full.as_str(), ""));
        self.patterns.iter().any(|p| {
            let (po, pn) = p.split_once('/').unwrap_or((p.as_str(), ""));
            glob(po.as_bytes(), owner.as_bytes()) && glob(pn.as_bytes(), name.as_bytes())
        })
    }
}

/// `*` (any run) and `?` (one byte) matching, iterative with one backtrack point: linear
/// in practice and never recursive, whatever the pattern.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}
