//! `benchgen models list`: the four tabs of the platform's model picker, found on this machine.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::registry::Registry;
use super::spec::ModelSpec;
use crate::error::{Error, Result};
use crate::vars::ProcessVars;

#[derive(Debug, Serialize)]
pub struct Listing {
    /// The registry file read, if any.
    pub registry: Option<PathBuf>,
    pub platform: Vec<PlatformModel>,
    pub huggingface: Vec<CachedModel>,
    /// The folder scanned for trained checkpoints.
    pub trained_dir: PathBuf,
    pub trained: Vec<TrainedModel>,
    pub running: Vec<RunningModel>,
}

#[derive(Debug, Serialize)]
pub struct PlatformModel {
    pub alias: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CachedModel {
    /// `hf:ORG/NAME`
    pub spec: String,
    /// Each snapshot: its commit and the refs (branches, tags) pointing at it.
    pub revisions: Vec<CachedRevision>,
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct CachedRevision {
    pub commit: String,
    pub refs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TrainedModel {
    /// `trained:PATH`
    pub spec: String,
    /// `checkpoint`, `lora` or `gguf`.
    pub kind: &'static str,
    /// A LoRA adapter's base model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RunningModel {
    /// The registry alias that names this endpoint.
    pub alias: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `$BENCHGEN_TRAINED_DIR`, else `./checkpoints`.
pub fn trained_dir(vars: &ProcessVars) -> PathBuf {
    vars.path("BENCHGEN_TRAINED_DIR").unwrap_or_else(|| PathBuf::from("checkpoints"))
}

/// The registry's aliases, the checkpoints in `trained_dir` ([`trained_dir`]) and the models in
/// the hub cache `hub_cache` (`hub::HubConfig::cache_dir`).
pub fn list(registry: &Registry, trained_dir: PathBuf, hub_cache: &Path) -> Result<Listing> {
    let mut platform = Vec::new();
    let mut running = Vec::new();
    for e in registry.entries.values() {
        platform.push(PlatformModel {
            alias: e.alias.clone(),
            source: e.source.clone(),
            revision: e.revision.clone(),
            dtype: e.defaults.dtype.clone(),
            description: e.description.clone(),
        });
        if let Ok(ModelSpec::Running(ep)) = e.spec() {
            running.push(RunningModel { alias: e.alias.clone(), url: ep.url, model: ep.model });
        }
    }
    Ok(Listing {
        registry: registry.path.clone(),
        platform,
        huggingface: cached_models(hub_cache)?,
        trained: trained_models(&trained_dir)?,
        trained_dir,
        running,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(dir, e)),
    };
    out.sort();
    Ok(out)
}

/// Bytes under `path`, following no links (the HF cache's snapshots link into blobs/).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0)
    } else if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// Models in the HF hub cache (`models--ORG--NAME` folders), each with its snapshots.
pub fn cached_models(cache: &Path) -> Result<Vec<CachedModel>> {
    let mut out = Vec::new();
    for dir in read_dir_sorted(cache)? {
        let Some(name) =
            dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("models--"))
        else {
            continue;
        };
        let repo = name.replace("--", "/");
        let mut revisions: Vec<CachedRevision> = read_dir_sorted(&dir.join("snapshots"))?
            .iter()
            .filter_map(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .map(|c| CachedRevision { commit: c.to_string(), refs: Vec::new() })
            })
            .collect();
        for r in ref_files(&dir.join("refs"), "")? {
            let commit = std::fs::read_to_string(dir.join("refs").join(&r)).unwrap_or_default();
            if let Some(rev) = revisions.iter_mut().find(|v| v.commit == commit.trim()) {
                rev.refs.push(r);
            }
        }
        // Blobs hold the bytes; a cache without them (symlinks disabled) holds them in snapshots.
        let blobs = dir.join("blobs");
        let size_bytes =
            if blobs.is_dir() { size_of(&blobs) } else { size_of(&dir.join("snapshots")) };
        out.push(CachedModel { spec: format!("hf:{repo}"), revisions, size_bytes });
    }
    Ok(out)
}

/// Ref names under `refs/` (branches may contain slashes: `refs/pr/1`).
fn ref_files(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else { continue };
        let full = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        if p.is_dir() {
            out.extend(ref_files(&p, &full)?);
        } else {
            out.push(full);
        }
    }
    Ok(out)
}

/// Checkpoints, LoRA adapters and GGUF files directly under `dir`.
pub fn trained_models(dir: &Path) -> Result<Vec<TrainedModel>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        let spec = format!("trained:{}", p.display());
        if p.is_dir() && super::lora::is_adapter_dir(&p) {
            let base = super::lora::declared_base(&p);
            out.push(TrainedModel { spec, kind: "lora", base, size_bytes: size_of(&p) });
        } else if p.is_dir() && p.join("config.json").is_file() {
            out.push(TrainedModel {
                spec,
                kind: "checkpoint",
                base: None,
                size_bytes: size_of(&p),
            });
        } else if p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            out.push(TrainedModel { spec, kind: "gguf", base: None, size_bytes: size_of(&p) });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cached_snapshots_with_their_refs() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--Org--Tiny");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/def456")).unwrap();
        std::fs::create_dir_all(repo.join("refs/pr")).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        std::fs::write(repo.join("refs/pr/1"), "def456\n").unwrap();
        std::fs::write(repo.join("blobs/x"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(tmp.path().join("datasets--Org--Data")).unwrap();
        let models = cached_models(tmp.path()).unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].spec, "hf:Org/Tiny");
        assert_eq!(models[0].size_bytes, 1000);
        assert_eq!(models[0].revisions[0].refs, ["main"]);
        assert_eq!(models[0].revisions[1].refs, ["pr/1"]);
    }

    #[test]
    fn tells_checkpoints_adapters_and_gguf_apart() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("full")).unwrap();
        std::fs::write(tmp.path().join("full/config.json"), "{}").unwrap();
        std::fs::create_dir_all(tmp.path().join("lora")).unwrap();
        std::fs::write(
            tmp.path().join("lora/adapter_config.json"),
            r#"{"base_model_name_or_path":"hf:a/b"}"#,
        )
        .unwrap();
        std::fs::write(tmp.path().join("m.gguf"), b"GGUF").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let found = trained_models(tmp.path()).unwrap();
        let kinds: Vec<_> = found.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, ["checkpoint", "lora", "gguf"]);
        assert_eq!(found[1].base.as_deref(), Some("hf:a/b"));
        assert!(trained_models(&tmp.path().join("missing")).unwrap().is_empty());
    }
}
