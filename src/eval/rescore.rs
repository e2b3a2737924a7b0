//! `benchgen score`: re-scores saved predictions (a predictions file or a submission archive)
//! against an environment, without a model, as a run of its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::lifecycle::{environment_info, open_env, ActiveRun};
use super::scoring::Scoring;
use super::EvalOutcome;
use crate::env::{EnvSources, Environment};
use crate::error::{Error, Result, SettingError};
use crate::log::RunLog;
use crate::run::journal::read_predictions_file;
use crate::run::record::ModelInfo;
use crate::run::submission::{
    read_submission, read_submission_metadata, write_submission, SubmissionMetadata,
};
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
    let made = match &opts.predictions {
        SavedPredictions::Submission(p) => read_submission_metadata(p)?.unwrap_or_default(),
        SavedPredictions::Jsonl(_) => SubmissionMetadata::default(),
    };
    let env = match (&opts.env, &made.environment) {
        (Some(path), _) => open_env(Some(path), &opts.env_sources)?,
        (None, Some(e)) if e.name != Environment::embedded()?.manifest.name => {
            open_env(Some(Path::new(&e.name)), &opts.env_sources).map_err(|_| {
                Error::env(
                    &e.name,
                    "the submission was made on this environment (its metadata.json says so), \
                     which is not found by name: give its folder or .zip with --env",
                )
            })?
        }
        (None, _) => open_env(None, &opts.env_sources)?,
    };
    agree("--env", Some(&env.manifest.name), made.environment.as_ref().map(|e| &e.name))?;
    let recorded_phase = made.environment.as_ref().and_then(|e| e.phase.clone());
    agree("--phase", opts.phase.as_ref(), recorded_phase.as_ref())?;
    let phase = env.phase(opts.phase.as_deref().or(recorded_phase.as_deref()))?.clone();
    agree("--limit", opts.limit, made.limit)?;
    // Archives from before `limit` was recorded: an unsharded run's predictions are the first
    // `items` items, which is what its limit kept.
    let limit = opts.limit.or(made.limit).or(made.items.filter(|_| made.shard.is_none()));
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
        if let Some(limit) = limit {
            items.truncate(limit.max(1));
        }
        if let Some(shard) = made.shard {
            items = shard.select(items);
            log.line(format!(
                "Shard {shard}: {} of the items, as the submission was made",
                items.len()
            ));
        }
        run.record.items = Some(items.len());
        log.line(format!("Loaded {} items and {} predictions", items.len(), predictions.len()));
        let metadata = serde_json::json!({
            "run_id": run.record.run_id,
            "rescored_from": run.record.model.spec,
            "environment": {"name": env.manifest.name, "version": env.manifest.version, "phase": phase.name},
            "created": run.record.created,
            "items": predictions.len(),
            "limit": limit,
            "shard": made.shard,
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

/// A flag given to `score` must name what the submission's metadata says it was made with.
fn agree<T: PartialEq + std::fmt::Display>(
    flag: &'static str,
    given: Option<T>,
    recorded: Option<T>,
) -> Result<()> {
    match (given, recorded) {
        (Some(given), Some(recorded)) if given != recorded => {
            Err(SettingError::ContradictsSubmission {
                flag,
                given: given.to_string(),
                recorded: format!("{flag} {recorded}"),
            }
            .into())
        }
        _ => Ok(()),
    }
}
