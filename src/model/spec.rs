//! Model specs as users write them (design doc §1) → a checkpoint.

use std::path::Path;

use super::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// What `--model` was, for messages and the run record.
pub fn describe(spec: Option<&str>) -> String {
    spec.map_or_else(|| crate::embedded::MODEL_ORIGIN.to_string(), str::to_string)
}

/// `None` or `embedded` → the model compiled into the binary; `trained:PATH` or a plain path →
/// a local HF-layout checkpoint directory, or a GGUF file when the path ends in `.gguf`.
pub fn resolve(spec: Option<&str>) -> Result<Checkpoint> {
    let Some(spec) = spec else { return Ok(crate::embedded::model_checkpoint()) };
    if spec == "embedded" || spec == crate::embedded::MODEL_ORIGIN {
        return Ok(crate::embedded::model_checkpoint());
    }
    for (prefix, what) in [
        ("hf:", "HuggingFace hub models"),
        ("platform:", "platform model aliases"),
        ("running:", "running endpoints"),
    ] {
        if spec.starts_with(prefix) {
            return Err(Error::model(
                spec,
                format!("{what} ({prefix}…) are not supported by this build yet; pass a local checkpoint directory or .gguf file"),
            ));
        }
    }
    let path = Path::new(spec.strip_prefix("trained:").unwrap_or(spec));
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return super::gguf::checkpoint(path);
    }
    Checkpoint::from_dir(path)
}
