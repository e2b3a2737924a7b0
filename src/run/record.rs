//! `run.json`: what ran, with which settings, and how it ended.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generation::{GenParams, Truncate};
use crate::model::KvDtype;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Interrupted,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "Running",
            RunStatus::Completed => "Completed",
            RunStatus::Failed => "Failed",
            RunStatus::Interrupted => "Interrupted",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// As given on the command line (`embedded` when defaulted).
    pub spec: String,
    pub origin: String,
    #[serde(default)]
    pub parameters: Option<usize>,
    /// The hub commit the files came from (hf: models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// sha256 of each file the model was read from (config, tokenizer, weights).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentInfo {
    pub name: String,
    pub version: String,
    pub origin: String,
    pub phase: String,
    /// sha256 over the manifest and the phase's data files, as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub device: String,
    pub dtype: String,
    pub batch_size: usize,
    pub limit: Option<usize>,
    pub seed: u64,
    /// `--truncate`; absent means `error` (and in runs from before the option existed).
    #[serde(default, skip_serializing_if = "Truncate::is_error")]
    pub truncate: Truncate,
    /// `--kv-dtype`; absent means f32 (and in runs from before the option existed).
    #[serde(default, skip_serializing_if = "KvDtype::is_f32")]
    pub kv_dtype: KvDtype,
    pub generation: GenParams,
    /// What `--resume` needs to rebuild the run; absent in runs from before resuming existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<RunInputs>,
}

/// The command-line inputs of an eval, as `--resume` must repeat them. Paths that exist are
/// stored absolute, so a run resumes from any working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInputs {
    /// `--env`; `None` → the embedded environment.
    pub env: Option<String>,
    /// `--model`; `None` → the embedded model.
    pub model: Option<String>,
    /// `--dtype` as given (`auto` resolves per device; `Settings::dtype` is the result).
    pub dtype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: u64,
    pub status: RunStatus,
    pub model: ModelInfo,
    pub environment: EnvironmentInfo,
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// The Submission File, relative to the run folder.
    #[serde(default)]
    pub submission: Option<String>,
    /// Absent for runs that only re-scored saved predictions.
    #[serde(default)]
    pub settings: Option<Settings>,
    #[serde(default)]
    pub items: Option<usize>,
    #[serde(default)]
    pub overall_score: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// What the (last) process that ran the items used: peak RSS, weights, KV cache peak.
    /// Absent in runs from before it was recorded, and in rescoring runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<super::memory::Memory>,
    /// Interrupted runs: the command that continues them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_command: Option<String>,
    pub benchgen_version: String,
}

impl RunRecord {
    /// A new record, Running, for `model` on `environment`; the Run ID is set on allocation.
    pub fn new(model: ModelInfo, environment: EnvironmentInfo, settings: Option<Settings>) -> Self {
        Self {
            run_id: 0,
            status: RunStatus::Running,
            model,
            environment,
            created: now_rfc3339(),
            finished: None,
            duration_s: None,
            submission: None,
            settings,
            items: None,
            overall_score: None,
            error: None,
            memory: None,
            resume_command: None,
            benchgen_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|source| Error::Json { path: path.to_path_buf(), source })
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
