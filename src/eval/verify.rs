//! `benchgen verify RUN_ID`: re-runs a run from its `run.json` (same environment, model,
//! settings, seed) in a scratch runs directory and compares, item by item, what the run's
//! folder holds with what the re-run produced. Greedy runs on the same device reproduce exactly.

use std::collections::BTreeMap;

use super::resume::{recorded, Recorded};
use super::{run_eval, Invocation};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::report::ScoreBreakdown;
use crate::run::journal::read_predictions_file;
use crate::run::submission::read_submission;
use crate::run::{PredictionRecord, RunFile};

/// One item whose recorded prediction is not what the re-run produced.
#[derive(Debug, Clone)]
pub struct Difference {
    pub id: String,
    /// Where the recorded value was read: `predictions.jsonl` or `submission.zip`.
    pub file: &'static str,
    pub recorded: Option<String>,
    pub rerun: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub run_id: u64,
    pub items: usize,
    pub differences: Vec<Difference>,
    pub recorded_score: Option<f64>,
    pub rerun_score: f64,
    /// Inputs whose content hash differs from the run's record (environment, model files).
    pub changed_inputs: Vec<String>,
}

impl VerifyReport {
    pub fn reproduced(&self) -> bool {
        self.differences.is_empty()
            && self.recorded_score == Some(self.rerun_score)
            && self.changed_inputs.is_empty()
    }
}

/// What an item's outcome is, for comparison: the prediction, and for multiple choice the
/// options' log-likelihoods (bit for bit, via their shortest round-trip text).
fn outcome(p: &PredictionRecord) -> String {
    match &p.choice_logprobs {
        Some(lps) => format!("{} {:?}", p.prediction, lps),
        None => p.prediction.clone(),
    }
}

fn compare(
    file: &'static str,
    recorded: &[PredictionRecord],
    rerun: &BTreeMap<&str, String>,
    out: &mut Vec<Difference>,
) {
    let mut seen = BTreeMap::new();
    for p in recorded {
        seen.insert(p.id.as_str(), outcome(p));
    }
    for (id, fresh) in rerun {
        match seen.get(id) {
            Some(old) if old == fresh => {}
            old => out.push(Difference {
                id: id.to_string(),
                file,
                recorded: old.cloned(),
                rerun: Some(fresh.clone()),
            }),
        }
    }
    for (id, old) in &seen {
        if !rerun.contains_key(id) {
            out.push(Difference {
                id: id.to_string(),
                file,
                recorded: Some(old.clone()),
                rerun: None,
            });
        }
    }
}

/// `how`: the runs directory that holds the run, and where this invocation finds models and
/// environments; the re-run goes to a scratch directory. Its `allow_scoring_program` lets the
/// re-run execute the environment's scoring program (the user's consent is not replayed from
/// the run).
pub fn verify_run(run_id: u64, how: &Invocation, log: &mut RunLog) -> Result<VerifyReport> {
    let Recorded { dir, record, settings } = recorded(&how.runs_dir, run_id, "verify")?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let how = Invocation { runs_dir: scratch.path().to_path_buf(), ..how.clone() };
    log.line(format!("Verifying run {run_id}: re-running it from its run.json"));
    let fresh = run_eval(&settings, &how, log)?;
    let rerun: Vec<PredictionRecord> = read_submission(&fresh.run_dir.file(RunFile::Submission))?;
    let rerun: BTreeMap<&str, String> = rerun.iter().map(|p| (p.id.as_str(), outcome(p))).collect();

    let mut differences = Vec::new();
    compare(
        RunFile::Journal.name(),
        &read_predictions_file(&dir.file(RunFile::Journal))?,
        &rerun,
        &mut differences,
    );
    compare(
        RunFile::Submission.name(),
        &read_submission(&dir.file(RunFile::Submission))?,
        &rerun,
        &mut differences,
    );
    let recorded_score =
        dir.read_breakdown::<ScoreBreakdown>().ok().flatten().map(|b| b.overall_score);
    let now = fresh.run_dir.read_record()?;
    let mut changed_inputs = Vec::new();
    if record.environment.content_sha256.is_some()
        && record.environment.content_sha256 != now.environment.content_sha256
    {
        changed_inputs.push(format!("environment {} (content sha256)", record.environment.origin));
    }
    for (file, hash) in &record.model.files {
        if now.model.files.get(file) != Some(hash) {
            changed_inputs.push(format!("model file {file}"));
        }
    }
    Ok(VerifyReport {
        run_id,
        items: rerun.len(),
        differences,
        recorded_score,
        rerun_score: fresh.breakdown.overall_score,
        changed_inputs,
    })
}
