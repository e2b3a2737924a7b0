//! HuggingFace hub downloads into the standard HF cache (shared with Python tools), for models
//! and datasets alike: below both `model` and `env`, which use it.
//!
//! `models--ORG--NAME/{blobs,refs,snapshots}` (and `datasets--ORG--NAME` for dataset files)
//! exactly as huggingface_hub lays it out, so a file downloaded by either side is found by the
//! other without downloading it again.

mod cache;
mod download;
mod errors;

use std::path::PathBuf;

use crate::error::{Error, Result};

pub use cache::{plan, shards, Plan, RepoCache};

/// Which kind of hub repository: its cache folder, its API path and how its errors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    /// The cache folder's prefix, as huggingface_hub names it.
    pub fn cache_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    fn repo_type(self) -> hf_hub::RepoType {
        match self {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }

    /// How users name a repo of this kind (in messages).
    fn spec(self) -> &'static str {
        match self {
            RepoKind::Model => "hf:ORG/NAME",
            RepoKind::Dataset => "hf://datasets/ORG/NAME",
        }
    }

    fn origin(self, repo: &str) -> String {
        match self {
            RepoKind::Model => format!("hf:{repo}"),
            RepoKind::Dataset => format!("hf://datasets/{repo}"),
        }
    }

    fn error(self, origin: &str, message: impl Into<String>) -> Error {
        match self {
            RepoKind::Model => Error::model(origin, message),
            RepoKind::Dataset => Error::dataset(origin, message),
        }
    }
}

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

fn nonempty_env(k: &str) -> Option<PathBuf> {
    std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// huggingface_hub's home: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(p) = nonempty_env("HF_HOME") {
        return p;
    }
    let cache = nonempty_env("XDG_CACHE_HOME")
        .or_else(|| nonempty_env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface")
}

/// The hub cache as huggingface_hub finds it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    nonempty_env("HF_HUB_CACHE").unwrap_or_else(|| hf_home().join("hub"))
}

/// `$HF_TOKEN`, else the file `huggingface-cli login` writes (`$HF_TOKEN_PATH`, else
/// `$HF_HOME/token`).
pub fn token() -> Option<String> {
    if let Some(t) =
        std::env::var("HF_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
    {
        return Some(t);
    }
    let path = nonempty_env("HF_TOKEN_PATH").unwrap_or_else(|| hf_home().join("token"));
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// `$HF_HUB_OFFLINE` set to a true value (`1`, `true`, `yes`, `on`): the cache only, as
/// huggingface_hub reads it.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
    })
}

/// `$HF_ENDPOINT` (a mirror or a test server), else the public hub.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

/// A full commit id; a pinned commit found in the cache needs no network at all.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Revisions and repo file names become paths under the cache; refuse any that could leave it.
pub fn is_safe_path(p: &str) -> bool {
    !(p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.split('/').any(|p| p.is_empty() || p == "." || p == ".."))
}

fn check_revision(kind: RepoKind, origin: &str, revision: &str) -> Result<()> {
    if !is_safe_path(revision) {
        return Err(kind.error(
            origin,
            format!("invalid revision {revision:?}: expected a branch, tag or commit"),
        ));
    }
    Ok(())
}

/// Fetches the files a model needs from `repo` at `revision` (default `main`).
pub fn fetch(repo: &str, revision: Option<&str>, opts: &HubOptions) -> Result<HubSnapshot> {
    let origin = RepoKind::Model.origin(repo);
    let revision = revision.unwrap_or("main");
    check_revision(RepoKind::Model, &origin, revision)?;
    let cache = RepoCache::new(&cache_dir(), repo);
    if opts.offline {
        return cache
            .snapshot(revision)
            .map_err(|missing| errors::offline(&origin, revision, &cache, &missing));
    }
    if is_commit(revision) {
        if let Ok(snap) = cache.snapshot(revision) {
            return Ok(snap);
        }
    }
    download::fetch(repo, revision, &cache, opts)
}

/// One file of a dataset repo, fetched (or found in the cache) at `revision` (default `main`).
pub fn fetch_dataset_file(
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<HubFile> {
    fetch_file(RepoKind::Dataset, repo, revision, file, opts)
}

/// One file of a model repo alone (a tokenizer without the weights), fetched (or found in the
/// cache) at `revision` (default `main`).
pub fn fetch_model_file(
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<HubFile> {
    fetch_file(RepoKind::Model, repo, revision, file, opts)
}

fn fetch_file(
    kind: RepoKind,
    repo: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<HubFile> {
    let origin = kind.origin(repo);
    let revision = revision.unwrap_or("main");
    check_revision(kind, &origin, revision)?;
    if !is_safe_path(file) {
        return Err(kind.error(
            &origin,
            format!("invalid file {file:?}: expected a path inside the repository"),
        ));
    }
    let cache = RepoCache::of(kind, &cache_dir(), repo);
    let cached = cache.file(revision, file);
    if opts.offline {
        return cached.map_err(|missing| errors::offline(&origin, revision, &cache, &missing));
    }
    if is_commit(revision) {
        if let Ok(found) = cached {
            return Ok(found);
        }
    }
    download::fetch_file(repo, revision, file, &cache, opts)
}

/// A file of a hub repo on disk, and the commit it is from.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub path: PathBuf,
    pub commit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_forty_lowercase_hex_digits() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        for not in [
            "main",
            "0123456789abcdef",
            "0123456789ABCDEF0123456789abcdef01234567",
            "g123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(!is_commit(not), "{not}");
        }
    }

    #[test]
    fn revisions_that_would_leave_refs_are_refused() {
        for ok in ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(check_revision(RepoKind::Model, "hf:a/b", ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../x", "a/../b", "/abs", "a//b", "a\\b", "a/"] {
            let e = check_revision(RepoKind::Dataset, "hf://datasets/a/b", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("dataset hf://datasets/a/b: invalid revision"), "{bad}: {e}");
        }
    }
}
