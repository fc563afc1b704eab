//! JSON results: the versioned schema of `record.rs`, written atomically, read back with
//! checks so that `report` and `compare` refuse what they cannot trust.

use std::path::Path;

use crate::error::{Error, Result};
use crate::record::{RunResult, SCHEMA_VERSION};

pub struct JsonFormat;

impl super::Export for JsonFormat {
    fn export(&self, result: &RunResult) -> String {
        to_string(result)
    }
}

pub fn to_string(result: &RunResult) -> String {
    // Serialising plain data cannot fail: no maps with non-string keys, no foreign types.
    serde_json::to_string_pretty(result).expect("results serialise") + "\n"
}

pub fn write(out: &crate::output::Output, result: &RunResult) -> Result<()> {
    out.write(to_string(result).as_bytes())
}

/// Reads a results file, refusing files that are not pconv-bench results or are newer.
pub fn read(path: &Path) -> Result<RunResult> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read results file '{shown}': {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("'{shown}' is not JSON: {e}")))?;
    let version = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .filter(|_| value.pointer("/tool/name").and_then(|n| n.as_str()) == Some("pconv-bench"))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "'{shown}' is not a pconv-bench result (no schema_version / tool.name)"
            ))
        })?;
    if value.get("mode").and_then(|m| m.as_str()) == Some("model") && value.get("config").is_none()
    {
        return Err(Error::Invalid(format!(
            "'{shown}' holds `pconv-bench model` results in the layout of an older pconv-bench: rerun `pconv-bench model --json` to get a file report and compare read"
        )));
    }
    if version > u64::from(SCHEMA_VERSION) {
        return Err(Error::Invalid(format!(
            "'{shown}' has schema_version {version}, newer than this tool reads ({SCHEMA_VERSION}): upgrade pconv-bench"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::Invalid(format!("'{shown}' is not a valid pconv-bench result: {e}")))
}
