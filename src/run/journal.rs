//! `predictions.jsonl`, the Prediction Output: one line per item, appended as items finish so
//! a crash loses at most the items still in flight.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::FinishReason;
use crate::error::{Error, LineError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub id: String,
    /// The remaining fields are what a run journals; predictions made elsewhere and handed to
    /// `benchgen score` may carry only `id` and `prediction`.
    #[serde(default)]
    pub prompt: String,
    pub prediction: String,
    #[serde(default)]
    pub tokens_in: usize,
    #[serde(default)]
    pub tokens_out: usize,
    /// Prompt tokens dropped from the left to fit the model's context (`--truncate left`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens_dropped: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Multiple choice: each option's log-likelihood, in option order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<f64>>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub struct Journal {
    file: File,
    path: PathBuf,
    unsynced: usize,
}

/// fsync after this many lines: bounded loss on power failure without a sync per token batch.
const SYNC_EVERY: usize = 16;

impl Journal {
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self { file, path: path.to_path_buf(), unsynced: 0 })
    }

    pub fn append(&mut self, record: &PredictionRecord) -> Result<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|source| Error::Json { path: self.path.clone(), source })?;
        line.push('\n');
        // One write per line: a reader never sees two records interleaved.
        self.file.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.unsynced = 0;
        Ok(())
    }
}

/// A run that stops on an error or an interruption still leaves its journal on disk, not in
/// the page cache; errors here have nowhere to go.
impl Drop for Journal {
    fn drop(&mut self) {
        if self.unsynced > 0 {
            let _ = self.file.sync_data();
        }
    }
}

/// What a resumed run finds in its journal.
pub struct Recovered {
    pub records: Vec<PredictionRecord>,
    /// A last line without its newline (the process died mid-write) was cut off; its item is
    /// redone.
    pub torn: bool,
}

/// Reads a run's journal for resuming: a missing file is an empty journal, a torn last line is
/// truncated away (so later appends start on a fresh line), any other bad line is an error.
pub fn recover(path: &Path) -> Result<Recovered> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Recovered { records: Vec::new(), torn: false })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    // Lines are written whole, newline included, in one write: only the last can be partial.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = complete < bytes.len();
    if torn {
        let file =
            std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        file.set_len(complete as u64).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
    }
    let records = read_predictions(&path.display().to_string(), &bytes[..complete])?;
    Ok(Recovered { records, torn })
}

/// Reads a predictions file; `origin` names it in errors with 1-based line numbers.
pub fn read_predictions(origin: &str, reader: impl BufRead) -> Result<Vec<PredictionRecord>> {
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let bad = |source: LineError| Error::PredictionsLine {
            origin: origin.to_string(),
            line: n + 1,
            source,
        };
        let line = line.map_err(|e| bad(e.into()))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|e| bad(e.into()))?;
        out.push(rec);
    }
    Ok(out)
}

pub fn read_predictions_file(path: &Path) -> Result<Vec<PredictionRecord>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_predictions(&path.display().to_string(), BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> PredictionRecord {
        PredictionRecord {
            id: id.into(),
            prompt: "p".into(),
            prediction: "1".into(),
            tokens_in: 1,
            tokens_out: 1,
            tokens_dropped: 0,
            finish_reason: None,
            choice_logprobs: None,
        }
    }

    #[test]
    fn recover_drops_a_torn_last_line_and_appends_cleanly_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::run::RunFile::Journal.name());
        assert!(recover(&path).unwrap().records.is_empty());
        let mut j = Journal::create(&path).unwrap();
        j.append(&rec("a")).unwrap();
        j.append(&rec("b")).unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let got = recover(&path).unwrap();
        assert!(got.torn);
        assert_eq!(got.records, vec![rec("a")]);
        Journal::create(&path).unwrap().append(&rec("b")).unwrap();
        let again = recover(&path).unwrap();
        assert!(!again.torn);
        assert_eq!(again.records, vec![rec("a"), rec("b")]);
    }

    #[test]
    fn recover_rejects_a_bad_line_that_is_not_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::run::RunFile::Journal.name());
        std::fs::write(&path, "{\"id\":\"a\",\"predic\n{\"id\":\"b\",\"prediction\":\"2\"}\n")
            .unwrap();
        assert!(recover(&path).is_err());
    }

    #[test]
    fn a_bad_line_is_named_with_its_cause() {
        let e = read_predictions("p.jsonl", "\n{\"id\": \"a\"}\n".as_bytes()).unwrap_err();
        let Error::PredictionsLine { origin, line, source: LineError::Json(cause) } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((origin.as_str(), *line), ("p.jsonl", 2));
        assert_eq!(e.to_string(), format!("p.jsonl: line 2: {cause}"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
