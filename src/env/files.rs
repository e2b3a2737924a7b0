//! Where an environment's files come from: a directory, a .zip read into memory (nothing is
//! extracted to disk, so an archive cannot write anywhere), or the binary itself.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Archives are downloaded from strangers: refuse ones that would blow up in memory.
const MAX_ARCHIVE_BYTES: u64 = 2 << 30;

pub enum EnvFiles {
    Dir(PathBuf),
    Archive(BTreeMap<String, Vec<u8>>),
    Embedded(&'static [(&'static str, &'static [u8])]),
}

/// Rejects absolute paths and `..` so a manifest can only name files inside its environment.
fn check_relative(origin: &str, rel: &str) -> Result<()> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(Error::env(
            origin,
            format!("path \"{rel}\" must be relative and stay inside the environment"),
        ))
    }
}

impl EnvFiles {
    pub fn open_archive(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::env(&origin, format!("not a readable .zip archive: {e}")))?;
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::env(&origin, format!("archive entry {i}: {e}")))?;
            if entry.is_dir() {
                continue;
            }
            let name = entry.name().to_string();
            // enclosed_name() is None for absolute paths and `..`: such an entry is refused.
            if entry.enclosed_name().is_none() || entry.is_symlink() {
                return Err(Error::env(
                    &origin,
                    format!("archive entry \"{name}\" is unsafe (absolute path, '..' or symlink)"),
                ));
            }
            total += entry.size();
            if total > MAX_ARCHIVE_BYTES {
                return Err(Error::env(&origin, "archive unpacks to more than 2 GiB"));
            }
            let mut buf = Vec::with_capacity(entry.size().min(1 << 26) as usize);
            (&mut entry)
                .take(MAX_ARCHIVE_BYTES)
                .read_to_end(&mut buf)
                .map_err(|e| Error::env(&origin, format!("archive entry \"{name}\": {e}")))?;
            files.insert(name.replace('\\', "/"), buf);
        }
        // A zip of a folder holds "folder/environment.toml": read it as if rooted there.
        if !files.contains_key("environment.toml") {
            let roots: Vec<&String> = files
                .keys()
                .filter(|k| k.ends_with("/environment.toml") && k.matches('/').count() == 1)
                .collect();
            if let [root] = roots.as_slice() {
                let prefix = root.trim_end_matches("environment.toml").to_string();
                files = files
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_string(), v)))
                    .collect();
            }
        }
        Ok(EnvFiles::Archive(files))
    }

    pub fn exists(&self, rel: &str) -> bool {
        match self {
            EnvFiles::Dir(root) => root.join(rel).is_file(),
            EnvFiles::Archive(files) => files.contains_key(rel),
            EnvFiles::Embedded(files) => files.iter().any(|(n, _)| *n == rel),
        }
    }

    /// Every file under the folder `dir` (recursively), as paths relative to the environment
    /// root with `/` separators, sorted. Symlinks in a directory are skipped: they could point
    /// anywhere on the machine.
    pub fn list_under(&self, origin: &str, dir: &str) -> Result<Vec<String>> {
        check_relative(origin, dir)?;
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = match self {
            EnvFiles::Dir(root) => {
                let mut out = Vec::new();
                walk(root, &root.join(dir), &mut out)?;
                out
            }
            EnvFiles::Archive(files) => {
                files.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
            }
            EnvFiles::Embedded(files) => files
                .iter()
                .map(|(n, _)| n.to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    pub fn read(&self, origin: &str, rel: &str) -> Result<Vec<u8>> {
        check_relative(origin, rel)?;
        let missing = || Error::env(origin, format!("missing file {rel}"));
        match self {
            EnvFiles::Dir(root) => {
                let path = root.join(rel);
                if !path.is_file() {
                    return Err(missing());
                }
                std::fs::read(&path).map_err(|e| Error::io(path, e))
            }
            EnvFiles::Archive(files) => files.get(rel).cloned().ok_or_else(missing),
            EnvFiles::Embedded(files) => {
                files.iter().find(|(n, _)| *n == rel).map(|(_, b)| b.to_vec()).ok_or_else(missing)
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(())
}
