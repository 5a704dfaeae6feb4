//! `[log]`: how Paved writes its log.

use super::{pick, ConfigError, Env};
use serde::Deserialize;

/// The log's shape (`log.format`, `PAVED_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for people: time, level, span fields, message.
    #[default]
    Text,
    /// One JSON object per line for collectors, with the span's fields (the delivery id,
    /// repository, environment and operation where known) on each.
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub(super) format: Option<String>,
}

pub(super) fn load_log(file: FileLog, env: Env) -> Result<LogFormat, ConfigError> {
    match pick(env, None, "PAVED_LOG_FORMAT", file.format).as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::Invalid(format!(
            "log.format {other:?}: expected \"text\" or \"json\""
        ))),
    }
}
