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
use crate::vars::ProcessVars;

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
    /// Where the hub and its cache are, and the token.
    pub config: HubConfig,
}

/// A downloaded (or cached) snapshot: the folder holding the files, and its commit.
#[derive(Debug, Clone)]
pub struct HubSnapshot {
    pub dir: PathBuf,
    pub commit: String,
}

/// Where the hub and its cache are, and the user's token: what huggingface_hub reads from its
/// variables ([`HubConfig::from_vars`]). The default is what an empty environment gives.
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The hub cache as huggingface_hub finds it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `$HF_ENDPOINT` (a mirror or a test server), else the public hub; no trailing `/`.
    pub endpoint: String,
    /// `$HF_TOKEN`, trimmed, when set to something.
    pub token: Option<String>,
    /// The file `huggingface-cli login` writes (`$HF_TOKEN_PATH`, else `$HF_HOME/token`), read
    /// by [`HubConfig::token`] when `token` is not set.
    pub token_file: PathBuf,
}

impl HubConfig {
    pub fn from_vars(vars: &ProcessVars) -> Self {
        let home = hf_home(vars);
        Self {
            cache_dir: vars.path("HF_HUB_CACHE").unwrap_or_else(|| home.join("hub")),
            endpoint: vars
                .get_str("HF_ENDPOINT")
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            token: vars.get_str("HF_TOKEN").map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            token_file: vars.path("HF_TOKEN_PATH").unwrap_or_else(|| home.join("token")),
        }
    }

    /// The token to send: `$HF_TOKEN`, else the token file's, read now.
    pub fn token(&self) -> Option<String> {
        if let Some(t) = &self.token {
            return Some(t.clone());
        }
        std::fs::read_to_string(&self.token_file)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self::from_vars(&ProcessVars::default())
    }
}

/// The token is a secret: shown as set or not.
impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("cache_dir", &self.cache_dir)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// huggingface_hub's home: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`.
fn hf_home(vars: &ProcessVars) -> PathBuf {
    if let Some(p) = vars.path("HF_HOME") {
        return p;
    }
    let cache = vars
        .path("XDG_CACHE_HOME")
        .or_else(|| vars.path("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface")
}

/// `$HF_HUB_OFFLINE` set to a true value (`1`, `true`, `yes`, `on`): the cache only, as
/// huggingface_hub reads it.
pub fn offline_from_vars(vars: &ProcessVars) -> bool {
    vars.get_str("HF_HUB_OFFLINE").is_some_and(|v| {
        matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
    })
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
    let cache = RepoCache::new(&opts.config.cache_dir, repo);
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
    let cache = RepoCache::of(kind, &opts.config.cache_dir, repo);
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
    fn the_cache_endpoint_and_token_come_from_the_variables_as_huggingface_hub_reads_them() {
        let vars = |pairs: &[(&str, &str)]| HubConfig::from_vars(&pairs.iter().copied().collect());
        let empty = vars(&[]);
        assert_eq!(empty, HubConfig::default());
        assert_eq!(empty.cache_dir, PathBuf::from(".cache/huggingface/hub"));
        assert_eq!(empty.endpoint, "https://huggingface.co");
        assert_eq!(empty.token, None);
        assert_eq!(empty.token_file, PathBuf::from(".cache/huggingface/token"));
        let home = vars(&[("HOME", "/u"), ("HF_ENDPOINT", " http://127.0.0.1:9/ ")]);
        assert_eq!(home.cache_dir, PathBuf::from("/u/.cache/huggingface/hub"));
        assert_eq!(home.endpoint, "http://127.0.0.1:9");
        let xdg = vars(&[("HOME", "/u"), ("XDG_CACHE_HOME", "/x"), ("HF_TOKEN", "  ")]);
        assert_eq!(xdg.cache_dir, PathBuf::from("/x/huggingface/hub"));
        assert_eq!(xdg.token, None, "a blank token is none");
        let hf = vars(&[
            ("XDG_CACHE_HOME", "/x"),
            ("HF_HOME", "/hf"),
            ("HF_TOKEN", " hf_abc\n"),
            ("HF_ENDPOINT", ""),
        ]);
        assert_eq!(hf.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(hf.token_file, PathBuf::from("/hf/token"));
        assert_eq!(hf.token.as_deref(), Some("hf_abc"));
        assert_eq!(hf.endpoint, "https://huggingface.co");
        assert!(!format!("{hf:?}").contains("hf_abc"), "the token is not shown");
        let own = vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c"), ("HF_TOKEN_PATH", "/t")]);
        assert_eq!((own.cache_dir, own.token_file), (PathBuf::from("/c"), PathBuf::from("/t")));
    }

    #[test]
    fn the_token_file_is_read_when_no_token_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let config = HubConfig { token_file: file.clone(), ..HubConfig::default() };
        assert_eq!(config.token(), None);
        std::fs::write(&file, "hf_file\n").unwrap();
        assert_eq!(config.token().as_deref(), Some("hf_file"));
        let set = HubConfig { token: Some("hf_var".into()), ..config };
        assert_eq!(set.token().as_deref(), Some("hf_var"));
    }

    #[test]
    fn offline_takes_the_true_values_huggingface_hub_takes() {
        let offline = |v: &str| offline_from_vars(&[("HF_HUB_OFFLINE", v)].into_iter().collect());
        for yes in ["1", "true", " TRUE ", "yes", "on"] {
            assert!(offline(yes), "{yes:?}");
        }
        for no in ["", "0", "false", "no", "off", "2"] {
            assert!(!offline(no), "{no:?}");
        }
        assert!(!offline_from_vars(&ProcessVars::default()));
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
