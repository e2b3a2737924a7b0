//! `benchgen eval --resume RUN_ID`: continues a run that crashed, was killed or interrupted.
//! The settings come from its `run.json`; flags given again must agree with them (batch size
//! excepted: an item's output does not depend on its batch-mates). Items whose prediction is
//! in the journal are kept as they are; only the others run, so the finished run's artifacts
//! equal those of a run that was never stopped.

use crate::model::spec::SourceOptions;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::lifecycle::ActiveRun;
use super::{EvalOptions, EvalOutcome, Plan};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::report::ScoreBreakdown;
use crate::run::journal::recover;
use crate::run::record::{RunInputs, Settings};
use crate::run::{RunDir, RunFile, RunRecord, RunStatus, RunsDir};

/// Flags given together with `--resume`; `None` → not given, the run's own value is used.
#[derive(Debug, Clone, Default)]
pub struct GivenOptions {
    /// Offline mode and registry for this invocation (not part of the run's identity).
    pub sources: Option<SourceOptions>,
    pub env: Option<PathBuf>,
    pub model: Option<String>,
    pub phase: Option<String>,
    pub device: Option<String>,
    pub dtype: Option<String>,
    pub batch_size: Option<usize>,
    pub limit: Option<usize>,
    pub seed: Option<u64>,
    pub truncate: Option<crate::engine::Truncate>,
    pub kv_dtype: Option<crate::model::KvDtype>,
    /// `--allow-scoring-program`: never taken from the run, the user must give it again.
    pub allow_scoring_program: bool,
}

/// A path that exists, made absolute (the run may be resumed from another directory); names
/// of shipped environments and other specs as given.
pub(super) fn absolute_if_exists(spec: &str) -> String {
    let path = Path::new(spec);
    match path.exists().then(|| std::fs::canonicalize(path)) {
        Some(Ok(abs)) => abs.to_string_lossy().into_owned(),
        _ => spec.to_string(),
    }
}

/// `--model` in one spelling: `None` for the embedded model, `trained:` dropped, paths absolute.
pub(super) fn normalize_model(spec: Option<&str>) -> Option<String> {
    let spec = spec?;
    if spec == "embedded" || spec == crate::model::embedded::MODEL_ORIGIN {
        return None;
    }
    Some(absolute_if_exists(spec.strip_prefix("trained:").unwrap_or(spec)))
}

/// A run as recorded: its folder, record, settings, inputs, and the options that re-run it.
pub(super) struct Recorded {
    pub dir: RunDir,
    pub record: RunRecord,
    pub settings: Settings,
    pub inputs: RunInputs,
    pub opts: EvalOptions,
}

/// Reads run `run_id` for `purpose` ("resume", "verify"); refuses runs that cannot be re-run.
pub(super) fn recorded(runs_dir: &Path, run_id: u64, purpose: &str) -> Result<Recorded> {
    let dir = RunsDir::new(runs_dir).run(run_id);
    if !dir.file(RunFile::Record).is_file() {
        return Err(Error::Runs {
            path: runs_dir.to_path_buf(),
            message: format!(
                "there is no run {run_id} to {purpose} (`benchgen runs list` shows the runs)"
            ),
        });
    }
    let record = dir.read_record()?;
    let settings = record.settings.clone().ok_or_else(|| {
        Error::Invalid(format!("run {run_id} re-scored saved predictions (`benchgen score`); there is no model run to {purpose}"))
    })?;
    let inputs = settings.inputs.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "run {run_id} was made by a benchgen that did not record its inputs, so there is nothing to {purpose} it from; start a new run"
        ))
    })?;
    let opts = EvalOptions {
        env: inputs.env.as_ref().map(PathBuf::from),
        model: inputs.model.clone(),
        phase: Some(record.environment.phase.clone()),
        device: settings.device.clone(),
        dtype: inputs.dtype.clone(),
        batch_size: settings.batch_size,
        limit: settings.limit,
        seed: settings.seed,
        truncate: settings.truncate,
        kv_dtype: settings.kv_dtype,
        runs_dir: runs_dir.to_path_buf(),
        sources: SourceOptions::from_env(),
        // Consent to run an environment's program is given per invocation, never replayed.
        allow_scoring_program: false,
    };
    Ok(Recorded { dir, record, settings, inputs, opts })
}

pub fn resume_eval(
    runs_dir: &Path,
    run_id: u64,
    given: &GivenOptions,
    log: &mut RunLog,
) -> Result<EvalOutcome> {
    let started = Instant::now();
    let Recorded { dir, record, settings, inputs, mut opts } =
        recorded(runs_dir, run_id, "resume")?;
    check_given(run_id, given, &record, &settings, &inputs)?;
    opts.batch_size = given.batch_size.unwrap_or(settings.batch_size);
    opts.allow_scoring_program = given.allow_scoring_program;
    if let Some(sources) = &given.sources {
        opts.sources = sources.clone();
    }

    if record.status == RunStatus::Completed {
        // Re-running scoring could only rewrite the same files; a Completed run is final.
        log.line(format!("Run {run_id} is already Completed; nothing to resume"));
        let breakdown = dir.read_breakdown::<ScoreBreakdown>()?.ok_or_else(|| {
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            Error::io(dir.file(RunFile::Breakdown), missing)
        })?;
        return Ok(EvalOutcome { run_id, run_dir: dir, breakdown });
    }

    let plan = Plan::new(&opts)?;
    // Generation settings and dtype come from the environment's files and the device: if they
    // changed since, the two halves of the run would not be one run.
    let now = &plan.settings;
    if now.generation != settings.generation {
        return Err(Error::Invalid(format!(
            "run {run_id} cannot be resumed: the environment's generation settings changed (run: {:?}; now: {:?})",
            settings.generation, now.generation
        )));
    }
    if now.dtype != settings.dtype {
        return Err(refusal(run_id, "--dtype", &settings.dtype, &now.dtype));
    }
    // Under the run's lock: another process must not be appending while the journal is read.
    let run = ActiveRun::reopen(dir, record, log)?;
    let journal = recover(&run.dir.file(RunFile::Journal))?;
    if journal.torn {
        log.line("The journal's last line was cut off mid-write; that item is redone");
    }
    log.line(format!("Resuming with {} prediction(s) already journaled", journal.records.len()));
    if opts.batch_size != settings.batch_size {
        log.line(format!(
            "Batch size {} (the run started with {}): an item's output does not depend on its batch",
            opts.batch_size, settings.batch_size
        ));
    }
    plan.execute(run, &journal.records, log, started)
}

fn refusal(run_id: u64, flag: &str, run: &str, given: &str) -> Error {
    Error::Invalid(format!(
        "run {run_id} cannot be resumed with a different {flag}: the run has {run}, this command gives {given} \
         (leave {flag} out to use the run's)"
    ))
}

/// Every flag given again must name what the run used.
fn check_given(
    run_id: u64,
    given: &GivenOptions,
    record: &RunRecord,
    settings: &Settings,
    inputs: &RunInputs,
) -> Result<()> {
    let shown =
        |v: &Option<String>, default: &str| v.clone().unwrap_or_else(|| default.to_string());
    if let Some(env) = &given.env {
        let env = absolute_if_exists(&env.to_string_lossy());
        if inputs.env.as_deref() != Some(env.as_str()) {
            return Err(refusal(
                run_id,
                "--env",
                &shown(&inputs.env, "the embedded environment"),
                &env,
            ));
        }
    }
    if let Some(model) = &given.model {
        let model = normalize_model(Some(model));
        if model != inputs.model {
            return Err(refusal(
                run_id,
                "--model",
                &shown(&inputs.model, "embedded"),
                &shown(&model, "embedded"),
            ));
        }
    }
    if let Some(phase) = &given.phase {
        if *phase != record.environment.phase {
            return Err(refusal(run_id, "--phase", &record.environment.phase, phase));
        }
    }
    if let Some(device) = &given.device {
        if *device != settings.device {
            return Err(refusal(run_id, "--device", &settings.device, device));
        }
    }
    if let Some(dtype) = &given.dtype {
        if *dtype != inputs.dtype && *dtype != settings.dtype {
            return Err(refusal(
                run_id,
                "--dtype",
                &format!("{} ({})", inputs.dtype, settings.dtype),
                dtype,
            ));
        }
    }
    if let Some(limit) = given.limit {
        if Some(limit) != settings.limit {
            let run = settings.limit.map_or_else(|| "no limit".to_string(), |l| l.to_string());
            return Err(refusal(run_id, "--limit", &run, &limit.to_string()));
        }
    }
    if let Some(truncate) = given.truncate {
        if truncate != settings.truncate {
            return Err(refusal(
                run_id,
                "--truncate",
                &format!("{:?}", settings.truncate).to_lowercase(),
                &format!("{truncate:?}").to_lowercase(),
            ));
        }
    }
    if let Some(kv) = given.kv_dtype {
        if kv != settings.kv_dtype {
            return Err(refusal(run_id, "--kv-dtype", settings.kv_dtype.name(), kv.name()));
        }
    }
    if let Some(seed) = given.seed {
        if seed != settings.seed {
            return Err(refusal(run_id, "--seed", &settings.seed.to_string(), &seed.to_string()));
        }
    }
    Ok(())
}
