//! `source = "hf://datasets/ORG/NAME@REV/PATH"`: a phase's official file on the HuggingFace
//! hub, downloaded into the standard HF cache (`datasets--ORG--NAME`) and read from there.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::hub::{self, HubOptions};

const SCHEME: &str = "hf://datasets/";

/// A parsed `hf://datasets/…` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSource {
    /// `ORG/NAME`.
    pub repo: String,
    /// A branch, tag or commit; `main` when the reference names none. A revision with `/`
    /// (`refs/convert/parquet`) is written with `%2F`, as hub URLs write it.
    pub revision: String,
    /// The file inside the repository.
    pub path: String,
}

/// A `source = "…"` that is not a usable `hf://datasets/…` reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "source \"{reference}\": {problem}; expected hf://datasets/ORG/NAME@REVISION/PATH (@REVISION optional)"
)]
pub struct HfSourceError {
    /// The reference as written.
    pub reference: String,
    pub problem: HfSourceProblem,
}

/// What is wrong with an `hf://datasets/…` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HfSourceProblem {
    #[error("not an hf://datasets/ reference")]
    NotHfDatasets,
    #[error("no file path after the repository")]
    NoPath,
    #[error("empty organisation or dataset name")]
    EmptyName,
    #[error("empty revision after @")]
    EmptyRevision,
    #[error("the file path must be a relative path inside the repository")]
    UnsafePath,
}

impl HfSource {
    pub fn parse(text: &str) -> Result<Self, HfSourceError> {
        let bad = |problem: HfSourceProblem| HfSourceError { reference: text.to_string(), problem };
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| bad(HfSourceProblem::NotHfDatasets))?;
        let mut parts = rest.splitn(3, '/');
        let (org, name_rev, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(o), Some(n), Some(p)) => (o, n, p),
            _ => return Err(bad(HfSourceProblem::NoPath)),
        };
        let (name, revision) = match name_rev.split_once('@') {
            Some((n, r)) => (n, r.replace("%2F", "/").replace("%2f", "/")),
            None => (name_rev, "main".to_string()),
        };
        if org.is_empty() || name.is_empty() {
            return Err(bad(HfSourceProblem::EmptyName));
        }
        if revision.is_empty() {
            return Err(bad(HfSourceProblem::EmptyRevision));
        }
        if !hub::is_safe_path(path) {
            return Err(bad(HfSourceProblem::UnsafePath));
        }
        Ok(Self { repo: format!("{org}/{name}"), revision, path: path.to_string() })
    }

    /// The file name, whose extension picks the reader.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Downloads the file (or finds it in the cache; only there when `opts.offline`).
    pub fn fetch(&self, opts: &HubOptions) -> Result<Fetched> {
        let file = hub::fetch_dataset_file(&self.repo, Some(&self.revision), &self.path, opts)?;
        Ok(Fetched { origin: self.at(&file.commit), path: file.path, commit: file.commit })
    }

    /// The reference pinned to `commit`, which names exactly the bytes read.
    pub fn at(&self, commit: &str) -> String {
        format!("{SCHEME}{}@{commit}/{}", self.repo, self.path)
    }

    /// Every shard of the table this file starts: HF datasets split a large split into
    /// `NAME-00000-of-00003.parquet`, `NAME-00001-of-00003.parquet`, …, so a reference to the
    /// first of several names them all. Any other file (a later shard too) is just itself.
    pub fn shards(&self) -> Vec<HfSource> {
        let Some((prefix, count, width, ext)) = first_shard(&self.path) else {
            return vec![self.clone()];
        };
        (0..count)
            .map(|i| HfSource {
                path: format!("{prefix}-{i:0width$}-of-{count:0width$}{ext}"),
                ..self.clone()
            })
            .collect()
    }
}

/// `(prefix, shard count, digits, extension)` of `PREFIX-000…0-of-N.EXT` with N > 1 written in as
/// many digits as the index.
fn first_shard(path: &str) -> Option<(&str, usize, usize, &str)> {
    let dot = path.rfind('.').filter(|&d| !path[d..].contains('/'))?;
    let (stem, ext) = path.split_at(dot);
    let (head, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = head.rsplit_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(index)
        || !digits(count)
        || index.len() != count.len()
        || index.bytes().any(|b| b != b'0')
    {
        return None;
    }
    let n: usize = count.parse().ok()?;
    (n > 1 && !prefix.is_empty()).then_some((prefix, n, count.len(), ext))
}

impl std::fmt::Display for HfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}@{}/{}", self.repo, self.revision.replace('/', "%2F"), self.path)
    }
}

/// A source file on disk.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The reference pinned to its commit.
    pub origin: String,
    pub path: PathBuf,
    pub commit: String,
}

impl Fetched {
    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_repo_revision_and_path() {
        let s = HfSource::parse(
            "hf://datasets/allenai/ai2_arc@main/ARC-Easy/test-00000-of-00001.parquet",
        )
        .unwrap();
        assert_eq!(
            (s.repo.as_str(), s.revision.as_str(), s.path.as_str()),
            ("allenai/ai2_arc", "main", "ARC-Easy/test-00000-of-00001.parquet")
        );
        assert_eq!(s.file_name(), "test-00000-of-00001.parquet");
        let s = HfSource::parse("hf://datasets/o/n/test.jsonl").unwrap();
        assert_eq!(
            (s.repo.as_str(), s.revision.as_str(), s.path.as_str()),
            ("o/n", "main", "test.jsonl")
        );
        let s =
            HfSource::parse("hf://datasets/o/n@refs%2Fconvert%2Fparquet/default/test/0000.parquet")
                .unwrap();
        assert_eq!(s.revision, "refs/convert/parquet");
        assert_eq!(s.at("c0ffee"), "hf://datasets/o/n@c0ffee/default/test/0000.parquet");
    }

    #[test]
    fn a_first_shard_stands_for_all_shards_of_its_table() {
        let paths = |r: &str| {
            HfSource::parse(r).unwrap().shards().into_iter().map(|s| s.path).collect::<Vec<_>>()
        };
        assert_eq!(
            paths("hf://datasets/o/n@v1/rc/train-00000-of-00003.parquet"),
            [
                "rc/train-00000-of-00003.parquet",
                "rc/train-00001-of-00003.parquet",
                "rc/train-00002-of-00003.parquet"
            ]
        );
        for one in [
            "x/test-00000-of-00001.parquet",
            "x/test-00001-of-00003.parquet",
            "test.jsonl",
            "a-0-of-00002.parquet",
            "v1.0/t-of-2",
        ] {
            assert_eq!(paths(&format!("hf://datasets/o/n/{one}")), [one], "{one}");
        }
        let s = &HfSource::parse("hf://datasets/o/n@refs%2Fpr%2F1/t-00000-of-00002.parquet")
            .unwrap()
            .shards()[1];
        assert_eq!(
            (s.revision.as_str(), s.to_string().as_str()),
            ("refs/pr/1", "hf://datasets/o/n@refs%2Fpr%2F1/t-00001-of-00002.parquet")
        );
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        for bad in [
            "hf:o/n/x.parquet",
            "hf://models/o/n/x",
            "hf://datasets/o/n",
            "hf://datasets/o/n@/x",
            "hf://datasets//n/x",
            "hf://datasets/o/n/../x",
            "hf://datasets/o/n/a//b",
            "hf://datasets/o/n/",
        ] {
            let e = HfSource::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(bad) && e.contains("hf://datasets/ORG/NAME@REVISION/PATH"),
                "{bad}: {e}"
            );
        }
        let e = HfSource::parse("hf://datasets/o/n@/x").unwrap_err();
        assert_eq!(e.problem, HfSourceProblem::EmptyRevision);
        assert_eq!(
            e.to_string(),
            "source \"hf://datasets/o/n@/x\": empty revision after @; \
             expected hf://datasets/ORG/NAME@REVISION/PATH (@REVISION optional)"
        );
    }
}
