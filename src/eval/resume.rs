//! `benchgen eval --resume RUN_ID`: continues a run that crashed, was killed or interrupted.
//! The settings come from its `run.json`; flags given again must agree with them (batch size
//! excepted: an item's output does not depend on its batch-mates). Items whose prediction is
//! in the journal are kept as they are; only the others run, so the finished run's artifacts
//! equal those of a run that was never stopped.

use std::path::Path;
use std::time::Instant;

use super::lifecycle::ActiveRun;
use super::{EvalOutcome, Invocation, Plan};
use crate::device::DtypeSpec;
use crate::error::{Error, Result, ResumeError};
use crate::log::RunLog;
use crate::report::ScoreBreakdown;
use crate::run::journal::recover;
use crate::run::{RunDir, RunFile, RunRecord, RunStatus, RunsDir};
use crate::settings::Settings;

/// A run as recorded: its folder, record and settings.
pub(super) struct Recorded {
    pub dir: RunDir,
    pub record: RunRecord,
    pub settings: Settings,
}

/// Reads run `run_id` for `purpose` ("resume", "verify"); refuses runs that cannot be re-run.
pub(super) fn recorded(runs_dir: &Path, run_id: u64, purpose: &'static str) -> Result<Recorded> {
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
    let settings = record.settings.clone().ok_or(ResumeError::NotAModelRun { run_id, purpose })?;
    if record.inputs_unrecorded {
        return Err(ResumeError::InputsUnrecorded { run_id, purpose }.into());
    }
    Ok(Recorded { dir, record, settings })
}

/// Resumes run `run_id` with `given`: the run's own settings with the flags given again laid
/// over them (the command line does that), which must name what the run used, batch size
/// excepted.
pub fn resume_eval(
    run_id: u64,
    given: impl FnOnce(Settings) -> Settings,
    how: &Invocation,
    log: &mut RunLog,
) -> Result<EvalOutcome> {
    let started = Instant::now();
    let Recorded { dir, record, settings } = recorded(&how.runs_dir, run_id, "resume")?;
    let given = given(settings.clone()).normalized();
    // `auto` names whatever the run resolved it to; that is checked once it is resolved again.
    let spelled = Settings {
        dtype: if given.dtype == DtypeSpec::Auto { settings.dtype } else { given.dtype },
        ..given.clone()
    };
    if let Some(d) = settings.first_difference(&spelled, &Settings::THROUGHPUT_ONLY) {
        return Err(refusal(run_id, &d.flag(), &d.ours, &d.theirs));
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

    let plan = Plan::new(&given, how)?;
    // Generation settings and dtype come from the environment's files and the device: if they
    // changed since, the two halves of the run would not be one run.
    let now = &plan.settings;
    if now.generation != settings.generation {
        let shown = |g: &Option<crate::generation::GenParams>| {
            g.as_ref().map_or_else(|| "unrecorded".to_string(), |g| format!("{g:?}"))
        };
        return Err(ResumeError::GenerationChanged {
            run_id,
            run: shown(&settings.generation),
            now: shown(&now.generation),
        }
        .into());
    }
    if now.dtype != settings.dtype {
        return Err(refusal(run_id, "--dtype", settings.dtype.name(), now.dtype.name()));
    }
    // Under the run's lock: another process must not be appending while the journal is read.
    let run = ActiveRun::reopen(dir, record, log)?;
    let journal = recover(&run.dir.file(RunFile::Journal))?;
    if journal.torn {
        log.line("The journal's last line was cut off mid-write; that item is redone");
    }
    log.line(format!("Resuming with {} prediction(s) already journaled", journal.records.len()));
    if given.batch_size != settings.batch_size {
        log.line(format!(
            "Batch size {} (the run started with {}): an item's output does not depend on its batch",
            given.batch_size, settings.batch_size
        ));
    }
    plan.execute(run, &journal.records, log, started)
}

fn refusal(run_id: u64, flag: &str, run: &str, given: &str) -> Error {
    ResumeError::Different {
        run_id,
        flag: flag.to_string(),
        run: run.to_string(),
        given: given.to_string(),
    }
    .into()
}
