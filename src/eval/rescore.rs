//! `benchgen score`: re-scores saved predictions (a predictions file or a submission archive)
//! against an environment, without a model, as a run of its own.

use std::path::PathBuf;
use std::time::Instant;

use super::lifecycle::{environment_info, open_env, ActiveRun};
use super::scoring::Scoring;
use super::EvalOutcome;
use crate::env::EnvSources;
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::run::journal::read_predictions_file;
use crate::run::record::ModelInfo;
use crate::run::submission::{read_submission, write_submission};
use crate::run::{RunFile, RunRecord};

#[derive(Debug, Clone)]
pub enum SavedPredictions {
    /// Lines `{"id", "prediction"}` (other fields of a run's journal are kept if present).
    Jsonl(PathBuf),
    /// A submission archive with `predictions.jsonl` at its root.
    Submission(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub env: Option<PathBuf>,
    pub phase: Option<String>,
    pub predictions: SavedPredictions,
    /// Score only the first N items, as `eval --limit N` ran them.
    pub limit: Option<usize>,
    pub runs_dir: PathBuf,
    /// `--allow-scoring-program`, as for `eval`.
    pub allow_scoring_program: bool,
    /// Where the environment and its data are found.
    pub env_sources: EnvSources,
}

pub fn run_score(opts: &ScoreOptions, log: &mut RunLog) -> Result<EvalOutcome> {
    let started = Instant::now();
    let env = open_env(opts.env.as_deref(), &opts.env_sources)?;
    let phase = env.phase(opts.phase.as_deref())?.clone();
    super::program::check_allowed(&env, opts.allow_scoring_program)?;
    let (source, predictions) = match &opts.predictions {
        SavedPredictions::Jsonl(p) => {
            (format!("predictions:{}", p.display()), read_predictions_file(p)?)
        }
        SavedPredictions::Submission(p) => {
            (format!("submission:{}", p.display()), read_submission(p)?)
        }
    };
    if predictions.is_empty() {
        return Err(Error::NoPredictions { origin: source });
    }
    let mut record = RunRecord::new(
        ModelInfo {
            spec: source.clone(),
            origin: source,
            parameters: None,
            revision: None,
            files: Default::default(),
        },
        environment_info(&env, &phase.name),
        None,
    );
    record.submission = Some(RunFile::Submission.name().into());
    let mut run = ActiveRun::start(&opts.runs_dir, record, log)?;
    let result = (|| {
        log.line(format!("Loading benchmark data: {} phase \"{}\"", env.manifest.name, phase.name));
        let mut items = env.load_items(&phase)?;
        if let Some(limit) = opts.limit {
            items.truncate(limit.max(1));
        }
        run.record.items = Some(items.len());
        log.line(format!("Loaded {} items and {} predictions", items.len(), predictions.len()));
        let metadata = serde_json::json!({
            "run_id": run.record.run_id,
            "rescored_from": run.record.model.spec,
            "environment": {"name": env.manifest.name, "version": env.manifest.version, "phase": phase.name},
            "created": run.record.created,
            "items": predictions.len(),
            "benchgen_version": run.record.benchgen_version,
        });
        write_submission(&run.dir.file(RunFile::Submission), &predictions, &metadata)?;
        log.line("Scoring submission");
        let scoring = Scoring {
            env: &env,
            phase: &phase,
            run_dir: &run.dir,
            allow_program: opts.allow_scoring_program,
        };
        scoring.score_and_report(&run.record, &items, &predictions, started, log)
    })();
    run.finish(result, log, started)
}
