//! `predictions.jsonl`, the Prediction Output: one line per item, appended as items finish so
//! a crash loses at most the items still in flight.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::FinishReason;
use crate::error::{Error, Result};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Multiple choice: each option's log-likelihood, in option order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<f64>>,
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

/// Reads a predictions file; `origin` names it in errors with 1-based line numbers.
pub fn read_predictions(origin: &str, reader: impl BufRead) -> Result<Vec<PredictionRecord>> {
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::Invalid(format!("{origin}: line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line)
            .map_err(|e| Error::Invalid(format!("{origin}: line {}: {e}", n + 1)))?;
        out.push(rec);
    }
    Ok(out)
}

pub fn read_predictions_file(path: &Path) -> Result<Vec<PredictionRecord>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_predictions(&path.display().to_string(), BufReader::new(file))
}
