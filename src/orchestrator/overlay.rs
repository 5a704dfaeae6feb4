//! A tree with one file changed on top of another: the default branch as a request would
//! leave it, for the pre-flight checks.

use crate::tree::{TreeError, TreeReader};

pub struct Overlay<'a> {
    pub base: &'a dyn TreeReader,
    pub path: String,
    /// `None`: the file is deleted.
    pub content: Option<Vec<u8>>,
}

impl Overlay<'_> {
    fn parent_of_file(&self, dir: &str) -> bool {
        self.path
            .rsplit_once('/')
            .is_some_and(|(parent, _)| parent == dir)
    }
}

impl TreeReader for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TreeError> {
        if path == self.path {
            return Ok(self.content.clone());
        }
        self.base.read(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError> {
        let mut names = self.base.list(dir)?;
        if self.parent_of_file(dir) {
            let name = self.path.rsplit('/').next().unwrap_or_default().to_string();
            names.retain(|n| *n != name);
            if self.content.is_some() {
                names.push(name);
            }
            names.sort();
        } else if self.content.is_some() {
            // A folder the new file creates (environments/<new team>/).
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            if let Some(rest) = self.path.strip_prefix(&prefix) {
                if let Some((first, _)) = rest.split_once('/') {
                    if !names.iter().any(|n| n == first) {
                        names.push(first.to_string());
                        names.sort();
                    }
                }
            }
        }
        Ok(names)
    }

    fn is_dir(&self, path: &str) -> Result<bool, TreeError> {
        Ok(self.base.is_dir(path)?
            || (self.content.is_some() && self.path.starts_with(&format!("{path}/"))))
    }

    fn exists(&self, path: &str) -> Result<bool, TreeError> {
        if path == self.path {
            return Ok(self.content.is_some());
        }
        self.base.exists(path)
    }
}
