//! `run.json`: what ran, with which settings, and how it ended.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::settings::Settings;

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
    /// Read from a run made before runs recorded their environment and model settings: it
    /// cannot be resumed or verified.
    #[serde(skip)]
    pub inputs_unrecorded: bool,
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
    /// The host the run's process ran on (the last one, for a resumed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// A merged run (`benchgen merge`): the shard runs it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRun>,
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
            inputs_unrecorded: false,
            items: None,
            overall_score: None,
            error: None,
            memory: None,
            machine: host_name(),
            shards: Vec::new(),
            resume_command: None,
            benchgen_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json = |source| Error::Json { path: path.to_path_buf(), source };
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
        let unrecorded = upgrade(&mut value);
        let mut record: Self = serde_json::from_value(value).map_err(json)?;
        record.inputs_unrecorded = unrecorded;
        Ok(record)
    }
}

impl RunRecord {
    /// The items the run evaluated, with the `--limit` or shard that chose them:
    /// `20 (limit 20)`, `5 (shard 1/4)`; `-` before they are loaded.
    pub fn items_label(&self) -> String {
        let Some(n) = self.items else { return "-".into() };
        let settings = self.settings.as_ref();
        let mut chosen = Vec::new();
        if let Some(limit) = settings.and_then(|s| s.limit) {
            chosen.push(format!("limit {limit}"));
        }
        if let Some(shard) = settings.and_then(|s| s.shard) {
            chosen.push(format!("shard {shard}"));
        }
        if chosen.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({})", chosen.join(", "))
        }
    }
}

/// Brings the settings of a run written by an earlier benchgen into today's shape: they kept
/// `--env`, `--model` and the given `--dtype` apart under `inputs`, and the phase only under
/// `environment`. Returns whether the record predates `inputs`, so it lacks them altogether.
fn upgrade(record: &mut serde_json::Value) -> bool {
    let phase = record.pointer("/environment/phase").cloned();
    let Some(settings) = record.get_mut("settings").and_then(|s| s.as_object_mut()) else {
        return false;
    };
    if !settings.contains_key("phase") {
        settings.insert("phase".into(), phase.unwrap_or_default());
    }
    if settings.contains_key("env") {
        return false;
    }
    let inputs = settings.remove("inputs");
    for field in ["env", "model"] {
        let value = inputs.as_ref().and_then(|i| i.get(field)).cloned().unwrap_or_default();
        settings.insert(field.into(), value);
    }
    inputs.is_none()
}

/// One shard of a merged run, as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRun {
    pub run_id: u64,
    pub shard: crate::settings::Shard,
    pub created: String,
    pub duration_s: Option<f64>,
    pub machine: Option<String>,
}

/// This machine's host name, as the kernel has it (Linux); `None` elsewhere.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DtypeSpec;

    fn read(json: serde_json::Value) -> RunRecord {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::run::RunFile::Record.name());
        std::fs::write(&path, json.to_string()).unwrap();
        RunRecord::read(&path).unwrap()
    }

    fn old_record(settings: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "run_id": 3, "status": "Failed",
            "model": {"spec": "m", "origin": "m"},
            "environment": {"name": "e", "version": "1", "origin": "e", "phase": "test"},
            "created": "2026-01-01T00:00:00Z", "benchgen_version": "0.1.0",
            "settings": settings,
        })
    }

    #[test]
    fn settings_of_earlier_runs_read_in_todays_shape() {
        let generation = serde_json::json!({"max_new_tokens": 8, "stop": [], "temperature": 0.0, "top_k": null, "top_p": null});
        let with_inputs = read(old_record(serde_json::json!({
            "device": "cpu", "dtype": "f32", "batch_size": 4, "limit": 5, "seed": 7,
            "generation": generation,
            "inputs": {"env": "/envs/arith", "model": "/models/m", "dtype": "auto"},
        })));
        assert!(!with_inputs.inputs_unrecorded);
        let s = with_inputs.settings.unwrap();
        assert_eq!(s.env.as_deref(), Some("/envs/arith"));
        assert_eq!(s.model.as_deref(), Some("/models/m"));
        assert_eq!(s.phase.as_deref(), Some("test"));
        assert_eq!((s.dtype, s.limit, s.seed), (DtypeSpec::F32, Some(5), 7));
        assert_eq!(s.generation.unwrap().max_new_tokens, 8);

        let without = read(old_record(serde_json::json!({
            "device": "cpu", "dtype": "f32", "batch_size": 4, "limit": null, "seed": 0,
            "generation": generation,
        })));
        assert!(without.inputs_unrecorded, "a run that never recorded its inputs says so");

        // Today's records are read as written.
        let now = read(old_record(serde_json::to_value(Settings::default()).unwrap()));
        assert!(!now.inputs_unrecorded);
        assert_eq!(now.settings.unwrap(), Settings { phase: None, ..Settings::default() });
    }
}
