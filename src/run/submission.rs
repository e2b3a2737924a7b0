//! `submission.zip`, the archive a platform would receive: `predictions.jsonl` and
//! `metadata.json` at its root. The scorer reads predictions back from it, as a platform would.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;

use super::dir::RunFile;
use super::journal::{read_predictions, PredictionRecord};
use crate::error::{ArchiveError, Error, Result};
use crate::fsutil::write_atomic;

/// The archive holds the journal under the run folder's own name for it.
const JOURNAL: &str = RunFile::Journal.name();

fn zip_err(path: &Path, e: impl Into<ArchiveError>) -> Error {
    Error::Submission { path: path.to_path_buf(), source: e.into() }
}

/// Writes the archive atomically; `predictions` should already be in item order.
pub fn write_submission(
    path: &Path,
    predictions: &[PredictionRecord],
    metadata: &serde_json::Value,
) -> Result<()> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut lines = String::new();
    for p in predictions {
        lines.push_str(&serde_json::to_string(p).map_err(|e| zip_err(path, e))?);
        lines.push('\n');
    }
    let meta = serde_json::to_string_pretty(metadata).map_err(|e| zip_err(path, e))? + "\n";
    for (name, body) in [(JOURNAL, lines), ("metadata.json", meta)] {
        zip.start_file(name, opts).map_err(|e| zip_err(path, e))?;
        zip.write_all(body.as_bytes()).map_err(|e| Error::io(path, e))?;
    }
    let bytes = zip.finish().map_err(|e| zip_err(path, e))?.into_inner();
    write_atomic(path, &bytes)
}

/// Reads `predictions.jsonl` from a submission archive.
pub fn read_submission(path: &Path) -> Result<Vec<PredictionRecord>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_err(path, e))?;
    let mut entry = zip
        .by_name(JOURNAL)
        .map_err(|source| zip_err(path, ArchiveError::Missing { name: JOURNAL, source }))?;
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    read_predictions(&format!("{}:{JOURNAL}", path.display()), text.as_bytes())
}

/// What `metadata.json` says of the run that made an archive, as far as scoring needs it.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct SubmissionMetadata {
    #[serde(default)]
    pub environment: Option<MetadataEnvironment>,
    /// How many predictions the archive holds.
    #[serde(default)]
    pub items: Option<usize>,
    /// The run's `--limit` (archives from before it was recorded lack it).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The run's `--shard`, when it was one.
    #[serde(default)]
    pub shard: Option<crate::settings::Shard>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct MetadataEnvironment {
    pub name: String,
    #[serde(default)]
    pub phase: Option<String>,
}

/// Reads `metadata.json` from a submission archive; `None` when it has none.
pub fn read_submission_metadata(path: &Path) -> Result<Option<SubmissionMetadata>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_err(path, e))?;
    let mut entry = match zip.by_name("metadata.json") {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_err(path, e)),
    };
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| zip_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_archive_says_why_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.zip");
        std::fs::write(&garbage, b"not a zip").unwrap();
        let e = read_submission(&garbage).unwrap_err();
        assert!(matches!(&e, Error::Submission { source: ArchiveError::Zip(_), .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("{}: ", garbage.display())), "{e}");

        let empty = dir.path().join("empty.zip");
        write_submission(&empty, &[], &serde_json::json!({})).unwrap();
        assert!(read_submission(&empty).unwrap().is_empty());
        let other = dir.path().join("other.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&other).unwrap());
        zip.start_file("x.txt", SimpleFileOptions::default()).unwrap();
        zip.finish().unwrap();
        let e = read_submission(&other).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Submission { source: ArchiveError::Missing { name: JOURNAL, .. }, .. }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), format!("{}: no {JOURNAL} at the archive root", other.display()));
    }
}
