//! The runs directory: one folder per run, named by its integer Run ID.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct RunsDir {
    root: PathBuf,
}

impl RunsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Existing Run IDs, ascending. Folders that are not plain integers are ignored.
    pub fn ids(&self) -> Result<Vec<u64>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Takes the next free Run ID by creating its folder. `create_dir` fails if the folder
    /// exists, atomically, so two processes racing here never get the same id.
    pub fn allocate(&self) -> Result<(u64, PathBuf)> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut next = self.ids()?.last().map_or(1, |last| last + 1);
        for _ in 0..10_000 {
            let path = self.path_of(next);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok((next, path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Runs { path: self.root.clone(), message: "could not allocate a Run ID".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_threads_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let runs = RunsDir::new(dir.path().join("runs"));
        assert_eq!(runs.allocate().unwrap().0, 1);
        std::fs::create_dir(dir.path().join("runs/not-a-run")).unwrap();
        assert_eq!(runs.allocate().unwrap().0, 2);
        let root = runs.root().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || RunsDir::new(root).allocate().unwrap().0)
            })
            .collect();
        let mut got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (3..=10).collect::<Vec<_>>());
    }
}
