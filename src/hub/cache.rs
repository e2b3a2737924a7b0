//! Reading the HF cache without the network: refs → commit → snapshot files, and which files a
//! snapshot needs to be loadable.

use std::path::{Path, PathBuf};

use super::{is_commit, HubFile, HubSnapshot, RepoKind};

/// Optional files, fetched only when the repo has them.
const OPTIONAL: [&str; 3] =
    ["tokenizer_config.json", "generation_config.json", "chat_template.jinja"];
const INDEX: &str = "model.safetensors.index.json";

/// The files a snapshot needs, judged from which files the repo (or snapshot) has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Present and needed, in download order (the shard index, if any, among them).
    pub files: Vec<String>,
    /// Needed but absent.
    pub missing: Vec<String>,
    /// The shard index, whose shards are needed too once it is read.
    pub index: Option<String>,
}

/// A PEFT LoRA adapter (adapter_config.json, no config.json) needs only its two files; a model
/// needs config, tokenizer and safetensors weights (one file, or an index and its shards).
pub fn plan(has: &dyn Fn(&str) -> bool) -> Plan {
    let mut p = Plan { files: Vec::new(), missing: Vec::new(), index: None };
    let need = |p: &mut Plan, f: &str| {
        if has(f) {
            p.files.push(f.to_string());
        } else {
            p.missing.push(f.to_string());
        }
    };
    if !has("config.json") && has("adapter_config.json") {
        need(&mut p, "adapter_config.json");
        need(&mut p, "adapter_model.safetensors");
        return p;
    }
    need(&mut p, "config.json");
    need(&mut p, "tokenizer.json");
    if !has("model.safetensors") && has(INDEX) {
        p.index = Some(INDEX.to_string());
        need(&mut p, INDEX);
    } else {
        need(&mut p, "model.safetensors");
    }
    p.files.extend(OPTIONAL.iter().filter(|f| has(f)).map(|f| f.to_string()));
    p
}

/// A `model.safetensors.index.json` that does not list usable shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardIndexError {
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no \"weight_map\" object")]
    NoWeightMap,
    #[error("a weight_map value is not a file name")]
    NotAFileName,
    #[error("shard name {name:?} is not a plain file name")]
    UnsafeName { name: String },
    #[error("weight_map lists no shards")]
    NoShards,
}

/// The shard files a safetensors index lists, once each, in name order. Names that could leave
/// the snapshot folder are refused: they come from the network.
pub fn shards(index_json: &str) -> Result<Vec<String>, ShardIndexError> {
    let v: serde_json::Value = serde_json::from_str(index_json).map_err(ShardIndexError::Json)?;
    let map =
        v.get("weight_map").and_then(|m| m.as_object()).ok_or(ShardIndexError::NoWeightMap)?;
    let mut out = std::collections::BTreeSet::new();
    for file in map.values() {
        let file = file.as_str().ok_or(ShardIndexError::NotAFileName)?;
        if !super::is_safe_path(file) {
            return Err(ShardIndexError::UnsafeName { name: file.to_string() });
        }
        out.insert(file.to_string());
    }
    if out.is_empty() {
        return Err(ShardIndexError::NoShards);
    }
    Ok(out.into_iter().collect())
}

/// Why a snapshot cannot be served from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The commit the revision resolved to, if the cache knows it.
    pub commit: Option<String>,
    pub files: Vec<String>,
}

/// One repo's folder in the cache: `models--ORG--NAME` or `datasets--ORG--NAME`.
#[derive(Debug, Clone)]
pub struct RepoCache {
    pub dir: PathBuf,
    pub kind: RepoKind,
}

impl RepoCache {
    /// A model repo's folder.
    pub fn new(cache: &Path, repo: &str) -> Self {
        Self::of(RepoKind::Model, cache, repo)
    }

    pub fn of(kind: RepoKind, cache: &Path, repo: &str) -> Self {
        Self {
            dir: cache.join(format!("{}--{}", kind.cache_prefix(), repo.replace('/', "--"))),
            kind,
        }
    }

    pub fn ref_path(&self, revision: &str) -> PathBuf {
        self.dir.join("refs").join(revision)
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// A commit is its own ref; a branch or tag is read from `refs/`.
    pub fn commit(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// Written like huggingface_hub does (the bare commit), so either side reads the other's.
    pub fn write_ref(&self, revision: &str, commit: &str) -> std::io::Result<()> {
        let path = self.ref_path(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, commit)
    }

    /// A snapshot file counts only if it resolves to a file: a dangling link is missing.
    pub fn has(&self, commit: &str, file: &str) -> bool {
        self.snapshot_dir(commit).join(file).is_file()
    }

    /// One file of `revision`, if the cache holds it.
    pub fn file(&self, revision: &str, file: &str) -> Result<HubFile, Missing> {
        let missing = |commit: Option<String>| Missing { commit, files: vec![file.to_string()] };
        let commit = self.commit(revision).ok_or_else(|| missing(None))?;
        if !self.has(&commit, file) {
            return Err(missing(Some(commit)));
        }
        Ok(HubFile { path: self.snapshot_dir(&commit).join(file), commit })
    }

    /// The snapshot for `revision`, if the cache holds every file it needs.
    pub fn snapshot(&self, revision: &str) -> Result<HubSnapshot, Missing> {
        let none_cached = || Missing { commit: None, files: plan(&|_| false).missing };
        let commit = self.commit(revision).ok_or_else(none_cached)?;
        let has = |f: &str| self.has(&commit, f);
        let p = plan(&has);
        let mut missing = p.missing;
        if let Some(index) = p.index.filter(|i| has(i)) {
            let shard_files = std::fs::read_to_string(self.snapshot_dir(&commit).join(&index))
                .ok()
                .and_then(|text| shards(&text).ok());
            match shard_files {
                Some(s) => missing.extend(s.into_iter().filter(|f| !has(f))),
                None => missing.push(index),
            }
        }
        if missing.is_empty() {
            Ok(HubSnapshot { dir: self.snapshot_dir(&commit), commit })
        } else {
            Err(Missing { commit: Some(commit), files: missing })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    fn from(files: &[&str]) -> Plan {
        plan(&|f| files.contains(&f))
    }

    #[test]
    fn plan_takes_needed_and_present_optional_files_only() {
        let p = from(&[
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "generation_config.json",
            "README.md",
        ]);
        assert_eq!(
            p.files,
            ["config.json", "tokenizer.json", "model.safetensors", "generation_config.json"]
        );
        assert!(p.missing.is_empty() && p.index.is_none());
    }

    #[test]
    fn plan_prefers_single_file_then_index_and_names_what_is_missing() {
        let p = from(&["config.json", "model.safetensors.index.json", "model.safetensors"]);
        assert_eq!(p.files, ["config.json", "model.safetensors"]);
        assert_eq!(p.missing, ["tokenizer.json"]);
        let p = from(&["config.json", "tokenizer.json", "model.safetensors.index.json"]);
        assert_eq!(p.index.as_deref(), Some("model.safetensors.index.json"));
        assert_eq!(
            from(&["config.json", "tokenizer.json", "pytorch_model.bin"]).missing,
            ["model.safetensors"]
        );
        assert_eq!(from(&[]).missing, ["config.json", "tokenizer.json", "model.safetensors"]);
    }

    #[test]
    fn plan_for_an_adapter_wants_its_two_files() {
        let p = from(&["adapter_config.json", "adapter_model.safetensors", "README.md"]);
        assert_eq!(p.files, ["adapter_config.json", "adapter_model.safetensors"]);
        assert!(p.missing.is_empty());
        assert_eq!(from(&["adapter_config.json"]).missing, ["adapter_model.safetensors"]);
    }

    #[test]
    fn shards_are_deduplicated_and_unsafe_names_refused() {
        let idx = r#"{"metadata":{},"weight_map":{"a":"m-2.safetensors","b":"m-1.safetensors","c":"m-2.safetensors"}}"#;
        assert_eq!(shards(idx).unwrap(), ["m-1.safetensors", "m-2.safetensors"]);
        for bad in [
            r#"{"weight_map":{"a":"../x"}}"#,
            r#"{"weight_map":{"a":"/etc/x"}}"#,
            r#"{"weight_map":{}}"#,
            "{}",
            "[",
        ] {
            assert!(shards(bad).is_err(), "{bad}");
        }
    }

    fn touch(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn snapshot_follows_refs_and_reports_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(tmp.path(), "org/name");
        assert_eq!(repo.dir, tmp.path().join("models--org--name"));
        let none = repo.snapshot("main").unwrap_err();
        assert_eq!(none.commit, None);
        assert_eq!(none.files, ["config.json", "tokenizer.json", "model.safetensors"]);

        repo.write_ref("main", C).unwrap();
        let snap = repo.snapshot_dir(C);
        touch(&snap, "config.json", "{}");
        touch(&snap, "model.safetensors", "x");
        let m = repo.snapshot("main").unwrap_err();
        assert_eq!((m.commit.as_deref(), m.files), (Some(C), vec!["tokenizer.json".to_string()]));

        touch(&snap, "tokenizer.json", "{}");
        for rev in ["main", C] {
            let s = repo.snapshot(rev).unwrap();
            assert_eq!((s.dir, s.commit), (snap.clone(), C.to_string()));
        }
        assert!(repo.snapshot("v1").is_err(), "an unknown tag has no ref");
    }

    #[test]
    fn snapshot_checks_the_shards_an_index_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(tmp.path(), "org/name");
        let snap = repo.snapshot_dir(C);
        for f in ["config.json", "tokenizer.json", "m-1.safetensors"] {
            touch(&snap, f, "{}");
        }
        touch(&snap, INDEX, r#"{"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}}"#);
        assert_eq!(repo.snapshot(C).unwrap_err().files, ["m-2.safetensors"]);
        touch(&snap, "m-2.safetensors", "{}");
        assert!(repo.snapshot(C).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(tmp.path(), "org/name");
        let snap = repo.snapshot_dir(C);
        touch(&snap, "config.json", "{}");
        std::os::unix::fs::symlink("../../blobs/gone", snap.join("tokenizer.json")).unwrap();
        assert!(!repo.has(C, "tokenizer.json"));
    }

    #[test]
    fn dataset_files_are_found_by_revision_in_their_own_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = RepoCache::of(RepoKind::Dataset, tmp.path(), "org/data");
        assert_eq!(repo.dir, tmp.path().join("datasets--org--data"));
        let f = "data/test-00000-of-00001.parquet";
        assert_eq!(
            repo.file("main", f).unwrap_err(),
            Missing { commit: None, files: vec![f.to_string()] }
        );
        repo.write_ref("main", C).unwrap();
        assert_eq!(repo.file("main", f).unwrap_err().commit.as_deref(), Some(C));
        touch(&repo.snapshot_dir(C).join("data"), "test-00000-of-00001.parquet", "x");
        for rev in ["main", C] {
            let found = repo.file(rev, f).unwrap();
            assert_eq!((found.path, found.commit), (repo.snapshot_dir(C).join(f), C.to_string()));
        }
    }

    #[test]
    fn refs_hold_only_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(tmp.path(), "org/name");
        repo.write_ref("refs/pr/1", C).unwrap();
        assert_eq!(repo.commit("refs/pr/1").as_deref(), Some(C));
        repo.write_ref("main", "not a commit\n").unwrap();
        assert_eq!(repo.commit("main"), None);
    }
}
