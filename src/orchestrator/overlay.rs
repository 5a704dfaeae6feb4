//! A tree with files changed on top of another: the default branch as a request (one file)
//! or an import (many) would leave it, for the pre-flight checks.

use crate::tree::{TreeError, TreeReader};
use std::collections::BTreeMap;

pub struct Overlay<'a> {
    pub base: &'a dyn TreeReader,
    /// Path → content (`None`: the file is deleted).
    pub files: BTreeMap<String, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    fn prefix(dir: &str) -> String {
        if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        }
    }
}

impl TreeReader for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TreeError> {
        match self.files.get(path) {
            Some(content) => Ok(content.clone()),
            None => self.base.read(path),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError> {
        let mut names = if self.base.is_dir(dir)? {
            self.base.list(dir)?
        } else {
            Vec::new()
        };
        let prefix = Self::prefix(dir);
        for (path, content) in &self.files {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                // A file of this folder: added, or removed.
                None => {
                    names.retain(|n| n != rest);
                    if content.is_some() {
                        names.push(rest.to_string());
                    }
                }
                // A folder a new file creates (environments/<new team>/).
                Some((first, _)) => {
                    if content.is_some() && !names.iter().any(|n| n == first) {
                        names.push(first.to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn is_dir(&self, path: &str) -> Result<bool, TreeError> {
        let prefix = Self::prefix(path);
        Ok(self.base.is_dir(path)?
            || self
                .files
                .iter()
                .any(|(p, c)| c.is_some() && p.starts_with(&prefix)))
    }

    fn exists(&self, path: &str) -> Result<bool, TreeError> {
        match self.files.get(path) {
            Some(content) => Ok(content.is_some()),
            None => Ok(self.base.exists(path)? || self.is_dir(path)?),
        }
    }
}
