//! `ADE_OUTPUTS`: the file a script writes, in ADE's format.

use super::{Output, OUTPUTS_LIMIT};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The ADE outputs file: `{"outputs": {"name": {"type", "value", "sensitive"}}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputsFile {
    outputs: BTreeMap<String, Output>,
}

/// Reads `ADE_OUTPUTS`: absent or empty means no outputs; anything else must be the ADE
/// format. Only the ADE wrapper is accepted, so a script that wrote something else learns
/// it from the error instead of silently having no outputs.
pub(super) fn read_outputs_file(path: &Path) -> Result<BTreeMap<String, Output>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("ADE_OUTPUTS could not be read: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(OUTPUTS_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("ADE_OUTPUTS could not be read: {e}"))?;
    if bytes.len() > OUTPUTS_LIMIT {
        return Err(format!(
            "ADE_OUTPUTS is over {} MiB",
            OUTPUTS_LIMIT / (1024 * 1024)
        ));
    }
    parse_outputs(&bytes)
}

/// Parses the ADE outputs format (see [`read_outputs_file`]).
pub fn parse_outputs(bytes: &[u8]) -> Result<BTreeMap<String, Output>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let file: OutputsFile = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "ADE_OUTPUTS is not in the ADE format {{\"outputs\": {{\"name\": {{\"type\": \"string\", \"value\": \"…\", \"sensitive\": false}}}}}}: {e}"
        )
    })?;
    let mut outputs = file.outputs;
    for o in outputs.values_mut() {
        // ADE's secure types are sensitive whatever the flag says.
        if o.r#type.eq_ignore_ascii_case("securestring")
            || o.r#type.eq_ignore_ascii_case("secureobject")
        {
            o.sensitive = true;
        }
    }
    Ok(outputs)
}
