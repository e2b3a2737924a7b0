//! HuggingFace hub downloads into the standard HF cache (shared with Python tools).

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Cache only: no network (`--offline` / `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Progress bars on a terminal.
    pub progress: bool,
}

/// A downloaded (or cached) snapshot: the folder holding the files, and its commit.
#[derive(Debug, Clone)]
pub struct HubSnapshot {
    pub dir: PathBuf,
    pub commit: String,
}

/// The hub cache as huggingface_hub finds it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = nonempty("HF_HUB_CACHE") {
        return p;
    }
    if let Some(p) = nonempty("HF_HOME") {
        return p.join("hub");
    }
    let cache = nonempty("XDG_CACHE_HOME")
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// Fetches the files a model needs from `repo` at `revision` (default `main`).
pub fn fetch(repo: &str, revision: Option<&str>, _opts: &HubOptions) -> Result<HubSnapshot> {
    let _ = revision;
    Err(Error::model(format!("hf:{repo}"), "HuggingFace hub downloads are not implemented yet"))
}
